"""Reads a Path input (Cog's path_input test)."""

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def run(self, path: Path) -> str:
        with open(path) as f:
            return f.read()
