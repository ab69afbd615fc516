"""Log edge cases: a line without a newline, output from a subprocess, and a failure after printing."""

import subprocess

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, mode: str = Input(default="partial", choices=["partial", "fail"]), text: str = "x") -> str:
        if mode == "partial":
            print(f"no-newline-{text}", end="")
            return text
        print("before failing")
        subprocess.run(["echo", "child before failing"], check=True)
        raise RuntimeError("failed on purpose")
