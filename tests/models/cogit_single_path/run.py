"""Cog integration test coglet_single_path_output: one Path output (a scalar, never an array)."""

import os
import tempfile

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def run(self) -> Path:
        p = os.path.join(tempfile.mkdtemp(), "output.png")
        with open(p, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\nred")
        return Path(p)
