"""An Optional[str] input with no default (Cog's optional_input test)."""

from typing import Optional

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, s: Optional[str] = Input(description="Hello String.")) -> str:
        return "hello " + (s if s is not None else "No One")
