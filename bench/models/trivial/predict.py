"""The trivial sync predictor of the benchmark: returns at once, or after `seconds` (a loop of short
sleeps, so a cancel lands promptly on either runtime)."""

import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, text: str = Input(default="x"), seconds: float = Input(default=0.0)) -> str:
        if seconds > 0:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.01)
        return text
