"""Returns three files (Cog's path_list_output test)."""

import tempfile
from typing import List

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def run(self) -> List[Path]:
        folder = Path(tempfile.mkdtemp())
        output = []
        for i, text in enumerate(["foo", "bar", "baz"]):
            out = folder / f"out-{i}.txt"
            out.write_text(text)
            output.append(out)
        return output
