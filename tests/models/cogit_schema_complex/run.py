"""Cog integration test build_openapi_schema_complex: constraints, choices, Secret, an optional Path and
a BaseModel output."""

from typing import Optional

from cog import BaseModel, BaseRunner, Input, Path, Secret


class Output(BaseModel):
    text: str
    score: float


class Runner(BaseRunner):
    def run(
        self,
        prompt: str = Input(description="The prompt", default="hello"),
        temperature: float = Input(description="Sampling temp", ge=0, le=2, default=0.7),
        style: str = Input(description="Style", choices=["fast", "balanced", "quality"], default="balanced"),
        api_key: Secret = Input(description="API key"),
        image: Optional[Path] = Input(description="Optional image", default=None),
    ) -> Output:
        return Output(text=f"generated from {prompt} ({style}, key {len(api_key.get_secret_value())})", score=temperature)
