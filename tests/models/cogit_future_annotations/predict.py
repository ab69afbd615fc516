"""Cog integration test future_annotations: `from __future__ import annotations` with a Path output
(there, an image made with PIL; here, the PNG signature and some bytes)."""

from __future__ import annotations

import os
import tempfile

from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def predict(self) -> Path:
        out = Path(tempfile.mkdtemp()) / "output.png"
        out.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(16))
        return out
