"""Cog integration tests build_openapi_schema and build_pip_freeze's model: a str and a Path input, a
Path output written in a fresh temporary directory."""

import tempfile

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def setup(self) -> None:
        self.foo = "foo"

    def run(self, text: str, path: Path) -> Path:
        with open(path) as f:
            output = self.foo + text + f.read()
        tmpdir = Path(tempfile.mkdtemp())
        with open(tmpdir / "output.txt", "w") as fh:
            fh.write(output)
        return tmpdir / "output.txt"
