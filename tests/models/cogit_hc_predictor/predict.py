"""Cog integration test healthcheck_custom: a BasePredictor whose healthcheck() is always healthy."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, text: str) -> str:
        return f"hello {text}"

    def healthcheck(self) -> bool:
        return True
