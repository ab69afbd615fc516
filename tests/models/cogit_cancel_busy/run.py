"""Cog integration test cancel_sync_prediction: a sync run() busy-looping for `duration` seconds."""

import time

from cog import BaseRunner


class Runner(BaseRunner):
    def setup(self) -> None:
        pass

    def run(self, duration: float = 60.0) -> str:
        print("started", flush=True)
        deadline = time.monotonic() + duration
        while time.monotonic() < deadline:
            pass
        return "completed"
