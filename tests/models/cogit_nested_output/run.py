"""A BaseModel output with str, int, float, bool, list and Optional fields (Cog's nested_output_types test)."""

from typing import List, Optional

from cog import BaseModel, BaseRunner


class Output(BaseModel):
    name: str
    count: int
    score: float
    passed: bool
    tags: List[str]
    note: Optional[str]
    extra: Optional[str]


class Runner(BaseRunner):
    def run(self, name: str) -> Output:
        return Output(name=name, count=42, score=0.95, passed=True, tags=["fast", "cached"], note="extra info", extra=None)
