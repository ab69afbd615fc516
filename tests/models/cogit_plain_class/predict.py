"""A predictor class that does not derive from BasePredictor (Cog's non_base_predictor_class test)."""

from cog import Input


class Predictor:
    def predict(self, text: str = Input(default="world")) -> str:
        return f"hello {text}"
