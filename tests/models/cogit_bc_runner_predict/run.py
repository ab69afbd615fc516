"""Cog integration test backwards_compat_runner_predict_method: a BaseRunner defining predict()."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def predict(self, name: str = Input(description="Name")) -> str:
        return f"hello {name}"
