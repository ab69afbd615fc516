"""Cog integration test async_predictor: an async run()."""

from cog import BaseRunner


class Runner(BaseRunner):
    async def run(self, s: str) -> str:
        return "hello " + s
