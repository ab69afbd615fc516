"""A required str and Path, a bounded int with a default, a choice (Cog's static_schema_gen test)."""

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(
        self,
        text: str,
        image: Path,
        count: int = Input(description="Number of iterations", default=5, ge=1, le=100),
        mode: str = Input(description="Quality mode", default="fast", choices=["fast", "balanced", "quality"]),
    ) -> str:
        ext = str(image).rsplit(".", 1)[-1]
        return f"{text}-{count}-{mode}-{ext}"
