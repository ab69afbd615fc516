"""Imports fine, then fails in setup()."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        print("setup_error: about to fail")
        raise RuntimeError("boom in setup")

    def predict(self) -> str:
        return "unreachable"
