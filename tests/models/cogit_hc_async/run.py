"""Cog integration test healthcheck_async: a sync run() with an async healthcheck()."""

import asyncio

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self, text: str) -> str:
        return f"hello {text}"

    async def healthcheck(self) -> bool:
        await asyncio.sleep(0.1)
        return True
