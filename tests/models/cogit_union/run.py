"""A `str | None` input defaulting to None, with setup() state (Cog's union_type test)."""

from cog import BaseRunner, Input


class Runner(BaseRunner):
    def setup(self) -> None:
        self.prefix = "hello"

    def run(self, text: str | None = Input(description="Text to prefix with 'hello '", default=None)) -> str:
        return self.prefix + " " + text  # type: ignore[operator]
