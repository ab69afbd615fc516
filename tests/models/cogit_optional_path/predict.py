"""An optional Path input defaulting to None, and a Path output (Cog's optional_path_input test)."""

import tempfile

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(self, test_image: Path | None = Input(description="Test image", default=None)) -> Path:
        out = Path(tempfile.mkdtemp()) / "hello.webp"
        out.write_bytes(b"RIFF\x00\x00\x00\x00WEBP" if test_image is None else test_image.read_bytes())
        return out
