"""Cog integration test async_sleep: an async run() awaiting `sleep` seconds, five at a time."""

import asyncio

from cog import BaseRunner


class Runner(BaseRunner):
    async def run(self, s: str, sleep: float) -> str:
        await asyncio.sleep(sleep)
        return f"wake up {s}"
