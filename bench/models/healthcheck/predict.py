"""The trivial sync predictor with a user healthcheck.

The healthcheck returns True at once, unless the file named by $BENCH_HC_SLOW exists: then it creates
the file named by $BENCH_HC_MARKER (so the harness knows the check is running) and sleeps 3 s.
predict() returns the wall-clock time at which it started, so the harness can measure its start delay.
"""

import os
import time

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def healthcheck(self) -> bool:
        slow = os.environ.get("BENCH_HC_SLOW", "")
        if slow and os.path.exists(slow):
            with open(os.environ["BENCH_HC_MARKER"], "w") as f:
                f.write(str(time.time()))
            time.sleep(3)
        return True

    def predict(self, seconds: float = Input(default=0.0)) -> str:
        started = time.time()
        if seconds > 0:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.01)
        return f"{started:.6f}"
