"""The output type, in its own module (Cog's multi_file_schema test)."""

from pydantic import BaseModel


class Output(BaseModel):
    text: str
    score: float
    tags: list[str]
