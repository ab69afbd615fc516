"""@cog.streaming on an async token stream: x-cog-streaming and a concatenate iterator
(openapi.golden.json)."""

from cog import AsyncConcatenateIterator, BasePredictor, streaming


class Predictor(BasePredictor):
    @streaming
    async def predict(self, prompt: str = "hello world") -> AsyncConcatenateIterator[str]:
        for word in prompt.split():
            yield word + " "
