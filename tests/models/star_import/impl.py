"""The model lives here; predict.py re-exports it with a star import."""

from cog import BasePredictor

__all__ = ["Predictor"]


class Predictor(BasePredictor):
    def predict(self, text: str = "world") -> str:
        return f"star {text}"
