"""Cog integration test coglet_large_output: a 9 MiB string output."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self) -> str:
        return "x" * (9 * 1024 * 1024)
