"""Writes to stdout three ways: a shell child, a raw fd write, and Python's print."""

import os

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        os.system("echo from-shell")
        os.write(1, b"raw fd1\n")
        print("py print")
        return "ok"
