"""Prints `lines` lines, one every `interval` seconds, then waits `tail` seconds and returns."""

import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, lines: int = 1, interval: float = 0.0, tail: float = 0.0) -> str:
        for i in range(lines):
            print(f"line {i}", flush=True)
            if interval:
                time.sleep(interval)
        time.sleep(tail)
        return "done"
