"""Cog integration test sequential_state_leak: a module-level list appended to by every prediction;
the worker is long-lived, so it accumulates."""

from cog import BaseRunner

_state: list = []


class Runner(BaseRunner):
    def run(self, item: str) -> str:
        _state.append(item)
        return str(_state)
