"""Cog integration test cog_runtime_int (cog.yaml sets `build.cog_runtime`, which the runtime ignores)."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(self, num: int = Input(description="Number of things")) -> int:
        return num * 2
