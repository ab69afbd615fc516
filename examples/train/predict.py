"""A model that trains too: `train:` in cog.yaml, `cogvisor serve --mode train`, POST /trainings."""

import tempfile

from cog import BaseModel, BaseRunner, Input, Path


class TrainingResult(BaseModel):
    weights: Path
    steps: int


class Runner(BaseRunner):
    def setup(self, weights: str | None = None) -> None:
        self.weights = weights

    def run(self, prompt: str = "hi") -> str:
        return f"{prompt} (weights={self.weights})"

    def train(
        self,
        steps: int = Input(description="Training steps", default=3, ge=1, le=100),
        rate: float = Input(default=0.1),
    ) -> TrainingResult:
        for i in range(steps):
            print(f"step {i} rate={rate}")
        out = Path(tempfile.mkdtemp()) / "weights.txt"
        out.write_text(f"trained {steps}")
        return TrainingResult(weights=out, steps=steps)
