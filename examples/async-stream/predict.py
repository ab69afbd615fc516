"""An async token streamer: items are sent as they are yielded (SSE, webhooks), prints are routed to
the prediction that printed them even with several running at once."""

import asyncio

from cog import AsyncConcatenateIterator, BasePredictor, Input, concurrent, streaming


class Predictor(BasePredictor):
    async def setup(self) -> None:
        self.loop = asyncio.get_running_loop()

    @streaming
    @concurrent(max=4)
    async def predict(
        self,
        prompt: str = Input(default="hello world"),
        delay: float = Input(default=0.05, ge=0, le=5),
    ) -> AsyncConcatenateIterator[str]:
        assert asyncio.get_running_loop() is self.loop, "one event loop for setup and predictions"
        for word in prompt.split():
            print(f"[{prompt}] {word}")
            await asyncio.sleep(delay)
            yield word + " "
