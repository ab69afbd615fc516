"""Every input type and Input() option, echoed back: shows coercion, defaults and validation."""

from typing import Optional

from cog import BaseModel, BasePredictor, Input, Secret


class Echo(BaseModel):
    text: str
    count: int
    ratio: float
    flag: bool
    mode: str
    tags: list[str]
    maybe: Optional[str]
    secret: str
    secret_type: str
    ratio_type: str


class Predictor(BasePredictor):
    def predict(
        self,
        text: str = Input(description="Some text", min_length=1, max_length=20, regex="^[a-z ]+$"),
        count: int = Input(description="How many", default=2, ge=1, le=10),
        ratio: float = Input(default=0.5, ge=0.0, le=1.0),
        flag: bool = False,
        mode: str = Input(default="fast", choices=["fast", "slow"]),
        tags: list[str] = Input(default=["a"]),
        maybe: Optional[str] = None,
        api_key: Secret = Input(description="Not shown", default=None),
        old: str = Input(default="x", deprecated=True),
    ) -> Echo:
        return Echo(
            text=text,
            count=count,
            ratio=ratio,
            flag=flag,
            mode=mode,
            tags=tags,
            maybe=maybe,
            secret=api_key.get_secret_value() if api_key is not None else "",
            secret_type=type(api_key).__name__,
            ratio_type=type(ratio).__name__,
        )
