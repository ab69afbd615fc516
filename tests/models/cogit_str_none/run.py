"""Declares a str output and returns None (Cog's string_none_output test)."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self) -> str:
        return None  # type: ignore[return-value]
