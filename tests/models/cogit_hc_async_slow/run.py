"""Cog integration test healthcheck_async_timeout: a prediction with text=trigger_slow makes the async
healthcheck() sleep past the 5 s limit."""

import asyncio

from cog import BaseRunner


class Runner(BaseRunner):
    def setup(self) -> None:
        self._slow_mode = False

    async def run(self, text: str) -> str:
        if text == "trigger_slow":
            self._slow_mode = True
        return f"hello {text}"

    async def healthcheck(self) -> bool:
        if self._slow_mode:
            await asyncio.sleep(10)
        return True
