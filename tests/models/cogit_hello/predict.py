"""Greets `s` (Cog's string_predictor test; the predict_json_* tests use the same model)."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, s: str) -> str:
        return "hello " + s
