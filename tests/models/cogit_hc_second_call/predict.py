"""Cog integration tests healthcheck_exception and healthcheck_unhealthy: healthcheck() is healthy on its
first call, then raises (HC_MODE=raise) or returns False (otherwise) on every later one."""

import os

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        self._healthcheck_calls = 0

    def predict(self, text: str) -> str:
        return f"hello {text}"

    def healthcheck(self) -> bool:
        self._healthcheck_calls += 1
        if self._healthcheck_calls == 1:
            return True
        if os.environ.get("HC_MODE") == "raise":
            raise RuntimeError("Critical system error")
        return False
