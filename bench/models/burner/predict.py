"""A CPU-bound sync predictor for the worker pool benchmark: each prediction spins for `ms`
milliseconds of the process's own CPU time, so one worker uses one core."""

import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, ms: float = Input(default=50.0)) -> int:
        end = time.process_time() + ms / 1000
        n = 0
        while time.process_time() < end:
            n += 1
        return n
