"""A training input with a lower bound (Cog's input_validation_before_build test)."""

from cog import BaseModel, Input


class TrainingOutput(BaseModel):
    weights: str


def train(epochs: int = Input(ge=1)) -> TrainingOutput:
    return TrainingOutput(weights="ok")
