"""Leaks `megabytes` MB (10^6 bytes) per prediction: a bytearray kept in a module-level list, filled so
every page is resident. With `child_megabytes`, also starts a child process that holds that much and
sleeps (its pid is written to `pid_file`). Its setup is instant."""

import os
import subprocess
import sys

from cog import BasePredictor, Input

HELD: list[bytearray] = []

CHILD = """
import sys, time
held = bytearray(b"\\x01") * int(sys.argv[1])
time.sleep(600)
"""


class Predictor(BasePredictor):
    def predict(
        self,
        megabytes: int = Input(description="MB to leak (0: none)", default=40),
        child_megabytes: int = Input(description="MB a child process holds (0: no child)", default=0),
        pid_file: str = Input(description="where the child's pid is written", default=""),
    ) -> dict:
        if megabytes > 0:
            # Repetition writes every byte, so the pages are resident at once (a bare bytearray(n)
            # would be zero pages that only count once touched).
            HELD.append(bytearray(b"\x01") * (megabytes * 1_000_000))
        if child_megabytes > 0:
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(child_megabytes * 1_000_000)])
            with open(pid_file, "w") as f:
                f.write(str(child.pid))
        return {
            "generation": int(os.environ.get("COGVISOR_GENERATION", "0")),
            "pid": os.getpid(),
            "held_mb": sum(len(b) for b in HELD) // 1_000_000,
        }
