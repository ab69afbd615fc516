"""A streaming model that prints its input: waits `wait` seconds (so SSE subscribers can attach),
prints `text` `prints` times (each print one log event), yielding a short item after each, then holds
the prediction open for `hold` seconds. Used by the memory-bound fault tests (tests/faults) and
bench/memory_bounds.py."""

from __future__ import annotations

import sys
import time
from typing import Iterator

from cog import BasePredictor, Input, streaming


class Predictor(BasePredictor):
    @streaming
    def predict(
        self,
        text: str = Input(description="what each print writes", default="x"),
        prints: int = Input(description="how many times to print it", default=1),
        wait: float = Input(description="seconds to wait before printing", default=0.0),
        hold: float = Input(description="seconds to hold the prediction open after printing", default=0.0),
    ) -> Iterator[str]:
        time.sleep(wait)
        for i in range(prints):
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            yield f"item-{i}"
        time.sleep(hold)
        yield "done"
