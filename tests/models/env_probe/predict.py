"""Reports which of the named environment variables the model (and a process it starts) can see."""

import os
import subprocess
import sys

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, names: str) -> dict:
        wanted = names.split(",")
        child = subprocess.run(
            [sys.executable, "-c", "import os, sys, json; print(json.dumps({n: os.environ.get(n) for n in sys.argv[1:]}))", *wanted],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return {"model": {n: os.environ.get(n) for n in wanted}, "child": child.strip()}
