"""Returns a pydantic v2 model (Cog's pydantic2_output test)."""

from typing import List

from pydantic import BaseModel as PydanticBaseModel

from cog import BaseRunner


class Result(PydanticBaseModel):
    name: str
    score: float
    tags: List[str]


class Runner(BaseRunner):
    def run(self, name: str, score: float = 0.5) -> Result:
        return Result(name=name, score=score, tags=["default"])
