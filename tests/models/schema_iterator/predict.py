"""An iterator of files: Output is an array with x-cog-array-type iterator (openapi.golden.json)."""

import tempfile
from typing import Iterator

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(self, frames: int = Input(description="How many frames", default=2, ge=1, le=10)) -> Iterator[Path]:
        out = Path(tempfile.mkdtemp())
        for i in range(frames):
            frame = out / f"frame{i}.txt"
            frame.write_text(f"frame {i}")
            yield frame
