"""Cog integration test webhook_prediction_error: run() raises."""

from cog import BaseRunner


class Runner(BaseRunner):
    def run(self) -> str:
        raise RuntimeError("prediction went wrong")
