"""The runner beside the trainer (Cog's training_setup test)."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, s: str) -> str:
        return "hello " + s
