"""Cog integration test cancel_async_prediction: an async run() awaiting asyncio.sleep(duration)."""

import asyncio

from cog import BaseRunner


class Runner(BaseRunner):
    def setup(self) -> None:
        pass

    async def run(self, duration: float = 60.0) -> str:
        print("started", flush=True)
        await asyncio.sleep(duration)
        return "completed"
