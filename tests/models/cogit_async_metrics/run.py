"""Cog Go integration test TestConcurrentAsyncMetrics: five async predictions at once, each recording
metrics through current_scope() before and after an await (replicate/cog issue 2901)."""

import asyncio

from cog import BaseRunner, current_scope


class Runner(BaseRunner):
    async def run(self, idx: int = 0, sleep: float = 0.5) -> str:
        scope = current_scope()
        scope.record_metric("prediction_index", idx)
        scope.record_metric("model_name", "test-model")
        await asyncio.sleep(sleep)
        scope.record_metric("completed", True)
        return f"done-{idx}"
