"""Cog integration test dict_input: a bare `dict` input."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, data: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in sorted(data.items()))
