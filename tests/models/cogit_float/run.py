"""Cog integration tests float_input_output and cog_runtime_float."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def run(self, num: float = Input(description="Number of things")) -> float:
        return num * 2.0
