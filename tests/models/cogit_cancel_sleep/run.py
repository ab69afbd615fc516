"""Cog integration test cancel_repeated: a sync run() blocked in time.sleep() (C-level nanosleep)."""

import time

from cog import BaseRunner


class Runner(BaseRunner):
    def setup(self) -> None:
        pass

    def run(self, duration: float = 60.0) -> str:
        print("started", flush=True)
        time.sleep(duration)
        return "completed"
