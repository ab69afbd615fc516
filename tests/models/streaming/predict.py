# A streaming generator with a pre-built Cog schema (as a `cog build` image has), for SSE tests.
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, n: int = 3, delay: float = 0.1):
        for i in range(n):
            print(f"tok {i}")
            time.sleep(delay)
            yield f"t{i}"
