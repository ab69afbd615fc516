"""Returns a pydantic model defined in a sibling module (Cog's multi_file_schema test)."""

from output_types import Output

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, prompt: str) -> Output:
        return Output(text=prompt, score=1.0, tags=["default"])
