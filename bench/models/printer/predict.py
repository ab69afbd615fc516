"""Prints: `megabytes` MB of output in `print` calls of `line` bytes each (the newline included)."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, megabytes: int = Input(default=50), line: int = Input(default=100)) -> int:
        text = "x" * (line - 1)
        count = megabytes * 1_000_000 // line
        for _ in range(count):
            print(text)
        return count
