"""A function predictor that takes and returns List[Path] (openapi.golden.json)."""

import tempfile
from typing import List

from cog import Input, Path


def predict(files: List[Path] = Input(description="Files to copy"), suffix: str = ".copy") -> List[Path]:
    out = Path(tempfile.mkdtemp())
    copies = []
    for i, f in enumerate(files):
        copy = out / f"{i}{suffix}"
        copy.write_bytes(Path(f).read_bytes())
        copies.append(copy)
    return copies
