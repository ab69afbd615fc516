"""Yields three chunks, then raises (Cog's iterator_error_midstream test)."""

from typing import Iterator

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self) -> Iterator[str]:
        for n in (1, 2, 3):
            yield f"chunk-{n}"
        raise RuntimeError("generator exploded")
