"""Cog integration test concatenate_iterator_output."""

from cog import BasePredictor, ConcatenateIterator


class Predictor(BasePredictor):
    def predict(self, prompt: str) -> ConcatenateIterator[str]:
        for token in [prompt, " world", " !"]:
            yield token
