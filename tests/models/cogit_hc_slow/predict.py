"""Cog integration test healthcheck_timeout: a prediction with text=trigger_slow makes the sync
healthcheck() sleep past the 5 s limit."""

import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        self._slow_mode = False

    def predict(self, text: str) -> str:
        if text == "trigger_slow":
            self._slow_mode = True
        return f"hello {text}"

    def healthcheck(self) -> bool:
        if self._slow_mode:
            time.sleep(10)
        return True
