"""Cog integration test async_generator_precollect: an async generator of five chunks, 0.1 s apart."""

import asyncio
from typing import AsyncIterator

from cog import BasePredictor


class Predictor(BasePredictor):
    async def predict(self) -> AsyncIterator[str]:
        for i in range(5):
            await asyncio.sleep(0.1)
            yield f"chunk-{i}"
