"""setup() prints FLOOD_MEGABYTES (default 30) megabytes in 100-byte lines between a first and a
last line a test can look for, then fails with a traceback when FLOOD_FAIL is set."""

from __future__ import annotations

import os
import sys

from cog import BasePredictor

LINE = "x" * 99


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("setup_flood: first line", flush=True)
        lines = int(float(os.environ.get("FLOOD_MEGABYTES", "30")) * 1_000_000) // 100
        batch = "\n".join(f"{LINE}" for _ in range(1000)) + "\n"
        for _ in range(lines // 1000):
            sys.stdout.write(batch)
        sys.stdout.flush()
        print("setup_flood: last line", flush=True)
        if os.environ.get("FLOOD_FAIL"):
            raise RuntimeError("setup_flood failed after the flood")

    def predict(self) -> str:
        return "ok"
