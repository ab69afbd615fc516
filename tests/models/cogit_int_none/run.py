"""Declares an int output and returns None (Cog's int_none_output test)."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self) -> int:
        return None  # type: ignore[return-value]
