"""Cog integration test file_input: a Path input read as text."""

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def run(self, file: Path) -> str:
        return file.read_text()
