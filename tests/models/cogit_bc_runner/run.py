"""Cog integration test backwards_compat_cog_predict: `run:` in cog.yaml, a BaseRunner with run()."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def run(self, name: str = Input(description="Name")) -> str:
        return f"hello {name}"
