"""Asks for its own recycle: every third prediction, or when told; can leave a setsid daemon behind.

With CRASH_SETUP_AFTER_RECYCLE=1 in the environment, setup raises in every generation after the first;
with RECYCLE_SETUP_SECONDS=N, recycle_setup() takes N seconds.
"""

import os
import subprocess
import time

import cog
from cog import BasePredictor, Input


def _maybe_crash() -> None:
    generation = int(os.environ.get("COGVISOR_GENERATION", "1"))
    if os.environ.get("CRASH_SETUP_AFTER_RECYCLE") == "1" and generation > 1:
        raise RuntimeError(f"setup broke in generation {generation}")


class Predictor(BasePredictor):
    def setup(self) -> None:
        _maybe_crash()
        self.setup_kind = "setup"
        self.count = 0

    def recycle_setup(self) -> None:
        _maybe_crash()
        time.sleep(float(os.environ.get("RECYCLE_SETUP_SECONDS", "0")))
        self.setup_kind = "recycle_setup"
        self.count = 0

    def predict(
        self,
        mode: str = Input(description="count | recycle | daemon | sleep", default="count"),
        seconds: float = Input(description="how long 'sleep' sleeps", default=1.0),
        pid_file: str = Input(description="where 'daemon' writes its daemon's pid", default=""),
    ) -> dict:
        self.count += 1
        if mode == "count" and self.count % 3 == 0:
            cog.recycle_worker(reason=f"every third prediction ({self.count})")
        elif mode == "recycle":
            cog.recycle_worker(reason="asked by the test", rerun_setup=True)
        elif mode == "daemon":
            daemon = subprocess.Popen(["setsid", "sleep", "1000"])
            with open(pid_file, "w") as f:
                f.write(str(daemon.pid))
            cog.recycle_worker(reason="leaving a daemon behind")
        elif mode == "sleep":
            time.sleep(seconds)
        return {
            "generation": int(os.environ.get("COGVISOR_GENERATION", "0")),
            "pid": os.getpid(),
            "count": self.count,
            "setup": self.setup_kind,
        }
