"""Cog Go integration test TestConcurrentAboveLimit: an async run() that sleeps, two at a time."""

import asyncio

from cog import BaseRunner


class Runner(BaseRunner):
    async def run(self, s: str, sleep: float) -> str:
        await asyncio.sleep(sleep)
        return f"wake up {s}"
