"""Every input form the schema golden pins (openapi.golden.json: what `cog build` writes for this file):
Input(default=None) on plain types, Secret with and without a default, choices, ge/le, string
constraints, List[Path], Optional, unions, deprecated, accept, odd names, and a BaseModel output."""

from typing import List, Optional

from cog import BaseModel, BasePredictor, Input, Path, Secret


class Item(BaseModel):
    name: str
    score: float


class Result(BaseModel):
    text: str
    image: Path
    note: Optional[str]
    files: List[Path]
    scores: dict[str, int]
    best: Item
    count: int = 1


class Predictor(BasePredictor):
    def predict(
        self,
        prompt: str = Input(description="What to draw", min_length=1, max_length=200, regex="^[a-z ]+$"),
        seed: int = Input(description="Random seed; random when not given", default=None),
        api_key: Secret = Input(description="Optional credential", default=None),
        token: Secret = Input(description="Required credential"),
        style: str = Input(default="vivid", choices=["vivid", "natural"]),
        steps: int = Input(choices=[10, 20, 50], default=20),
        temperature: float = Input(default=1.0, ge=0.0, le=2.0),
        top_p: float = Input(default=0.9, ge=0.01, le=1),
        images: List[Path] = Input(description="Reference images"),
        masks: Optional[List[Path]] = Input(default=None),
        tags: list[str] = Input(default=["a", "b"]),
        negative: Optional[str] = None,
        extra: Optional[int] = Input(description="No default"),
        old_mode: bool = Input(default=False, deprecated=True),
        photo: Path = Input(default=None, accept="image/*"),
        options: dict = Input(default={"k": 1}),
        value: str | int = "a",
        either: str | float | None = Input(default=None),
        _private_flag: bool = True,
        max__len: int = 3,
    ) -> Result:
        return Result(
            text=f"{prompt} seed={seed} key={api_key is not None} token={token.get_secret_value()} "
            f"style={style} steps={steps} extra={extra} either={either!r}",
            image=images[0],
            note=negative,
            files=list(images),
            scores={"steps": steps},
            best=Item(name=style, score=temperature),
        )
