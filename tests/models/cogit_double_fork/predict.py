"""setup() starts a shell that starts a Python process that forks; each prediction talks to the forked
child through files in the working directory (Cog's setup_subprocess_double_fork test). If the
background process has died (its output had nowhere to go), the prediction raises SystemExit."""

import os
import subprocess
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("---> starting background process")
        self.bg = subprocess.Popen(["bash", "run-forker.sh"])
        print(f"---> started background process pid={self.bg.pid}")

    def predict(self, s: str) -> str:
        status = self.bg.poll()
        print(f"---> background job status={status}")
        if status is not None:
            raise SystemExit
        with open(".inbox", "w") as inbox:
            inbox.write(s)
        started = time.time()
        while not os.path.exists(".outbox.done"):
            if time.time() - started > 5:
                raise TimeoutError
            time.sleep(0.01)
        try:
            with open(".outbox") as outbox:
                print(f"---> relaying message from background job pid={self.bg.pid}")
                return outbox.read()
        finally:
            os.unlink(".outbox")
            os.unlink(".outbox.done")
