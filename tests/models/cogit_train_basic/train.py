"""Writes `n` bytes of weights and returns them as a TrainingOutput (Cog's train_basic test)."""

import tempfile

from cog import BaseModel, Path


class TrainingOutput(BaseModel):
    weights: Path


def train(n: int) -> TrainingOutput:
    weights = Path(tempfile.mkdtemp()) / "weights.bin"
    weights.write_text("a" * n)
    return TrainingOutput(weights=weights)
