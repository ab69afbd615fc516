"""Cog integration tests coglet_iterator_path_output and coglet_iterator_upload_url: an iterator of three
Path outputs, each in a fresh temporary directory (there, PNGs made with PIL; here, named bytes)."""

import os
import tempfile
from typing import Iterator

from cog import BaseRunner, Path


class Runner(BaseRunner):
    def run(self) -> Iterator[Path]:
        for color in ["red", "blue", "green"]:
            p = os.path.join(tempfile.mkdtemp(), f"{color}.png")
            with open(p, "wb") as f:
                f.write(b"\x89PNG\r\n\x1a\n" + color.encode())
            yield Path(p)
