"""setup() state, a str and a Path in, a Path out (Cog's path_input_output test)."""

import tempfile

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def setup(self) -> None:
        self.foo = "foo"

    def run(self, text: str, path: Path) -> Path:
        with open(path) as f:
            output = self.foo + text + f.read()
        out = Path(tempfile.mkdtemp()) / "output.txt"
        out.write_text(output)
        return out
