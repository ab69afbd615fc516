"""A Predictor exists, but cog.yaml does not name it: the server must refuse to start."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self) -> str:
        return "unreachable"
