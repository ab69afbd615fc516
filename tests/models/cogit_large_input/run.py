"""Cog integration test coglet_large_input: a 7 MiB string input; the output is its length."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, padding: str = "") -> str:
        return str(len(padding))
