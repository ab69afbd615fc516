"""Doubles an integer (Cog's int_input_output and python313 tests)."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def run(self, num: int = Input(description="Number of things")) -> int:
        return num * 2
