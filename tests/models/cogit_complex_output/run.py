"""Cog integration test complex_output: a cog.BaseModel output with Optional fields."""

from typing import Optional

from cog import BaseModel, BaseRunner, Path


class ModelOutput(BaseModel):
    success: bool
    error: Optional[str]
    segmented_image: Optional[Path]


class Runner(BaseRunner):
    def run(self, msg: str) -> ModelOutput:
        return ModelOutput(success=False, error=msg, segmented_image=None)
