"""Kills its own worker process in the way the input asks."""

import os
import signal
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        mode: str = Input(description="exit | kill | sleep | ok", default="ok"),
        seconds: float = Input(description="how long 'sleep' sleeps", default=1.0),
    ) -> str:
        print(f"crash: mode={mode}", flush=True)
        if mode == "exit":
            os._exit(3)
        if mode == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if mode == "sleep":
            time.sleep(seconds)
            return "slept"
        return "ok"
