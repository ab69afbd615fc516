"""setup() takes 30 s: used with COG_SETUP_TIMEOUT to exercise the setup timeout."""

import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("setup_sleep: sleeping 30 s")
        time.sleep(30)

    def predict(self) -> str:
        return "ok"
