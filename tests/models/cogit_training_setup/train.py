"""A trainer class with setup(), train() and run() (Cog's training_setup test): train mode calls train()."""

from cog import BaseRunner


class Trainer(BaseRunner):
    def setup(self) -> None:
        print("Trainer is setting up.")

    def train(self, s: str) -> str:
        print("Trainer.train called.")
        return "hello train " + s

    def run(self, s: str) -> str:
        print("Trainer.run called.")
        return "hello run " + s
