"""Yields `count` strings (Cog's iterator_string_output test)."""

from typing import Iterator

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, count: int) -> Iterator[str]:
        for i in range(count):
            yield f"item-{i}"
