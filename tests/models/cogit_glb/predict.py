"""Cog integration test glb_project: setup() finds mesh.glb relative to the working directory (the model
directory), and predict() returns it by that relative path."""

from cog import BasePredictor, Path


class Predictor(BasePredictor):
    def setup(self) -> None:
        if not Path("mesh.glb").exists():
            raise ValueError("Example file mesh.glb does not exist")

    def predict(self) -> Path:
        return Path("mesh.glb")
