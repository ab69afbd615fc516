"""A runner in a subdirectory importing a module from the project root (Cog's subdirectory_predictor test)."""

from mylib import concat

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, s: str) -> str:
        return concat("hello", s)
