"""Echoes its input: a request of N bytes of input gets N bytes of output back."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, data: str = Input(default="")) -> str:
        return data
