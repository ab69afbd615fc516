"""For cogvisor's recycle timing: mode=recycle asks for a recycle and returns the wall-clock time at
which it asked. Every generation's setup is trivial."""

import time

import cog
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.ready = True

    def predict(self, mode: str = Input(default="noop")) -> float:
        now = time.time()
        if mode == "recycle":
            cog.recycle_worker(reason="benchmark")
        return now
