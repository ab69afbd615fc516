"""Cog integration tests backwards_compat_full_legacy and backwards_compat_base_predictor: `predict:` in
cog.yaml, a BasePredictor with predict()."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, name: str = Input(description="Name")) -> str:
        return f"hello {name}"
