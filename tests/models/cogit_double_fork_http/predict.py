"""setup() starts a shell that starts a Python process whose forked child serves HTTP on
$PONG_PORT; each prediction pings it (Cog's setup_subprocess_double_fork_http test)."""

import os
import subprocess
import time
import urllib.request

from cog import BasePredictor


def ping() -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{os.environ['PONG_PORT']}/ping", timeout=1) as r:
        return r.read()


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("---> starting background process")
        self.bg = subprocess.Popen(["bash", "run-pong.sh"])
        print(f"---> started background process pid={self.bg.pid}")
        for i in range(60):
            try:
                ping()
                print("---> background HTTP server is ready")
                break
            except OSError:
                print(f"---> waiting for HTTP server ({i + 1}/60)")
                time.sleep(0.25)
        else:
            raise RuntimeError("Background HTTP server failed to start")

    def predict(self, s: str) -> str:
        status = self.bg.poll()
        print(f"---> background job status={status}")
        if status is not None:
            raise SystemExit
        print(f"---> got {len(ping())} bytes from background job pid={self.bg.pid}")
        return "hello " + s
