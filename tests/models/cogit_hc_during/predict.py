"""Cog integration test healthcheck_during_prediction: health checks while a prediction sleeps.
HC_MODE=false makes healthcheck() fail, to show what a check while busy reports."""

import os
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, sleep_time: int) -> str:
        time.sleep(sleep_time)
        return f"slept for {sleep_time} seconds"

    def healthcheck(self) -> bool:
        return os.environ.get("HC_MODE") != "false"
