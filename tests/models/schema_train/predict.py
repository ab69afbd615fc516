"""predict: and train: in one cog.yaml: `cog build` writes one merged document (openapi.golden.json),
served the same in predict and train mode."""

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="Prompt"),
        mode: str = Input(default="fast", choices=["fast", "slow"]),
    ) -> str:
        return f"{prompt} ({mode})"
