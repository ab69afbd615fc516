"""The output type, in a package (Cog's static_schema_fallback test)."""

from cog import BaseModel


class Output(BaseModel):
    text: str
