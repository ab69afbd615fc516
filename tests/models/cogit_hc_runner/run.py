"""Cog integration tests healthcheck, healthcheck_repeated_calls, healthcheck_immediately_after_prediction:
a runner (with its own __init__) whose healthcheck() is always healthy."""

from cog import BaseRunner


class Runner(BaseRunner):
    def __init__(self) -> None:
        self.calls = 0

    def run(self, text: str) -> str:
        return f"hello {text}"

    def healthcheck(self) -> bool:
        self.calls += 1
        return True
