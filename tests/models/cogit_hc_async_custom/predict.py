"""Cog integration test healthcheck_async_custom: async predict() and async healthcheck()."""

import asyncio

from cog import BasePredictor


class Predictor(BasePredictor):
    async def predict(self, text: str) -> str:
        return f"hello {text}"

    async def healthcheck(self) -> bool:
        await asyncio.sleep(0.01)
        return True
