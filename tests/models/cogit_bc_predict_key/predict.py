"""Cog integration test backwards_compat_predict_key: `predict:` in cog.yaml naming a BaseRunner with run()."""

from cog import BaseRunner


class Predictor(BaseRunner):
    def run(self, s: str) -> str:
        return "hello " + s
