"""Cog integration test backwards_compat_predictor_run_method: a BasePredictor defining run()."""

from cog import BasePredictor, Input


class MyModel(BasePredictor):
    def run(self, name: str = Input(description="Name")) -> str:
        return f"hello {name}"
