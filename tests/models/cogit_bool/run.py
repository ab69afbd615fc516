"""Cog integration test bool_input_output."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, flag: bool) -> bool:
        return not flag
