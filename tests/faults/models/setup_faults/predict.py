"""setup() fails the way FAULT_SETUP says: `raise`, `sys_exit`, `os_exit` or `hang`.

Before failing it starts a `sleep 1000` child and writes its own pid and the child's to the files
`worker` and `child` in FAULT_PID_DIR, so the test can check the failed worker's whole tree is gone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        child = subprocess.Popen(["sleep", "1000"])
        pid_dir = os.environ.get("FAULT_PID_DIR")
        if pid_dir:
            for name, pid in (("worker", os.getpid()), ("child", child.pid)):
                with open(os.path.join(pid_dir, name), "w") as f:
                    f.write(str(pid))
        fault = os.environ.get("FAULT_SETUP", "")
        print(f"setup_faults: {fault}", flush=True)
        if fault == "raise":
            raise RuntimeError("boom in setup")
        if fault == "sys_exit":
            sys.exit(1)
        if fault == "os_exit":
            os._exit(3)
        if fault == "hang":
            time.sleep(1000)

    def predict(self) -> str:
        return "ok"
