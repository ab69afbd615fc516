"""Cog integration test dict_output: a bare `dict` output."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, name: str) -> dict:
        return {"greeting": "hello " + name, "length": len(name)}
