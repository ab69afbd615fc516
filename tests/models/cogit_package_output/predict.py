"""Returns a BaseModel imported from a local package (Cog's static_schema_fallback test)."""

from mypackage import Output

from cog import BasePredictor


class Predictor(BasePredictor):
    def predict(self, prompt: str) -> Output:
        return Output(text=prompt + " world")
