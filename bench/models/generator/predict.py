"""A token generator: yields `n` short strings (1000 by default)."""

from typing import Iterator

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, n: int = Input(default=1000)) -> Iterator[str]:
        for i in range(n):
            yield f"tok{i} "
