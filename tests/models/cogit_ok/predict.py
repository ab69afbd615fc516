"""Cog integration test webhook_delivery_failure: a predictor without inputs that answers "ok"."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return "ok"
