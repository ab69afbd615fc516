"""predict() always raises."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        raise ValueError("bad input value")
