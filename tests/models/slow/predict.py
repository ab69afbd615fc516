"""Sleeps as long as asked, then answers."""

import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, seconds: float = Input(description="how long to sleep", default=1.0)) -> str:
        time.sleep(seconds)
        return "done"
