"""The train() half of schema_train: a function in its own file."""

import tempfile

from cog import BaseModel, Input, Path


class TrainingOutput(BaseModel):
    weights: Path
    steps: int


def train(
    data: str = Input(description="Training data"),
    steps: int = Input(default=100, ge=1),
    kind: str = Input(default="lora", choices=["lora", "full"]),
) -> TrainingOutput:
    out = Path(tempfile.mkdtemp()) / "weights.txt"
    out.write_text(f"{kind} {steps} {data}")
    return TrainingOutput(weights=out, steps=steps)
