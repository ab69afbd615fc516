"""setup() starts a shell script that writes to stdout; each prediction sends it SIGUSR1, on which it
writes 100 lines (Cog's setup_subprocess_simple test)."""

import signal
import subprocess

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("---> starting background process")
        self.bg = subprocess.Popen(["bash", "child.sh"])
        print(f"---> started background process pid={self.bg.pid}")

    def predict(self, s: str) -> str:
        status = self.bg.poll()
        if status is not None:
            print(f"---> background job died status={status}")
            raise SystemExit
        print(f"---> sending signal to background job pid={self.bg.pid}")
        self.bg.send_signal(signal.SIGUSR1)
        return "hello " + s
