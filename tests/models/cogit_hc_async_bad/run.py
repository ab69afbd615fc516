"""Cog integration tests healthcheck_async_exception and healthcheck_async_unhealthy: an async
healthcheck() that raises or returns False, picked by HC_MODE (raise | false)."""

import asyncio
import os

from cog import BaseRunner


class Runner(BaseRunner):
    async def run(self, text: str) -> str:
        return f"hello {text}"

    async def healthcheck(self) -> bool:
        await asyncio.sleep(0.01)
        if os.environ.get("HC_MODE") == "raise":
            raise RuntimeError("Async healthcheck error")
        return False
