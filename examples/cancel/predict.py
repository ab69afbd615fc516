"""Cancellation of a sync prediction: POST /predictions/{id}/cancel raises CancelationException (a
BaseException, so `except Exception` does not swallow it) inside the running predict() call. Async
cancellation (the task is cancelled) is shown by examples/async-stream."""

import time

from cog import BasePredictor, CancelationException, Input


class Predictor(BasePredictor):
    def predict(self, seconds: float = Input(default=60, ge=0), swallow_generic: bool = False) -> str:
        deadline = time.monotonic() + seconds
        try:
            # Inside the try: a cancel can arrive as soon as "started" is visible.
            print("started", flush=True)
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.01)
                except Exception:  # noqa: BLE001 - CancelationException is a BaseException
                    if not swallow_generic:
                        raise
        except CancelationException:
            print("cancelled, cleaning up")
            raise
        return "finished"
