"""An async predictor for many slots (the harness sets COG_MAX_CONCURRENCY): sleeps `seconds` on the
event loop (0 = the trivial async prediction)."""

import asyncio

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    async def predict(self, seconds: float = Input(default=0.0)) -> str:
        if seconds > 0:
            await asyncio.sleep(seconds)
        return "ok"
