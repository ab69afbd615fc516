"""Cog integration test accept_mime_type: `accept=` on Path inputs is x-cog-accept in the schema; the
prediction sees the input file under a name ending in its type's extension."""

from typing import Optional

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="Text prompt", default="test"),
        image: Path = Input(description="Input image", accept="image/*"),
        audio: Optional[Path] = Input(description="Audio clip", accept="audio/wav,audio/mp3", default=None),
        weights: Optional[Path] = Input(description="Model weights", accept=".safetensors,.bin", default=None),
    ) -> str:
        ext = str(image).split(".")[-1]
        return f"{prompt}-{ext}"
