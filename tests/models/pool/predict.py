"""A sync model for worker pools: says which worker (index, pid, generation) ran each prediction and
what its environment holds; `sleep` keeps the worker busy, `burn` keeps a core busy."""

import os
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        mode: str = Input(description="who | sleep | burn", default="who"),
        seconds: float = Input(description="how long sleep or burn lasts", default=0.5),
        names: str = Input(description="environment variables to report", default=""),
    ) -> dict:
        if mode == "sleep":
            time.sleep(seconds)
        elif mode == "burn":
            end = time.process_time() + seconds
            n = 0
            while time.process_time() < end:
                n += 1
        return {
            "index": int(os.environ.get("COGVISOR_WORKER_INDEX", "-1")),
            "pid": os.getpid(),
            "generation": int(os.environ.get("COGVISOR_GENERATION", "0")),
            "env": {n: os.environ.get(n) for n in names.split(",") if n},
        }
