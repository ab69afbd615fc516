"""Every kind of input constraint (Cog's input_validation_before_build test)."""

from typing import Optional

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str,
        count: int = Input(default=5, ge=1, le=10),
        size: str = Input(default="small", choices=["small", "medium", "large"]),
        title: str = Input(default="ok", max_length=5),
        slug: str = Input(default="ok", regex="^[a-z]+$"),
        note: Optional[str] = Input(default=None),
    ) -> str:
        return prompt
