"""What a client or a careless model can hand the worker that it must bound without a restart: a URL
input that trickles (tests/faults/test_bound_inputs.py) and an output nested deeper than the
supervisor parses (tests/faults/test_bound_outputs.py).

Each setup() appends a line to `$BOUNDED_SETUPS` when it is set, so a test can see that setup did not
run again."""

from __future__ import annotations

import os
from typing import Any, Optional

from cog import BasePredictor, Input, Path


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


class Predictor(BasePredictor):
    def setup(self) -> None:
        log = os.environ.get("BOUNDED_SETUPS")
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")

    def predict(
        self,
        file: Optional[Path] = Input(description="a URL input, downloaded before predict() runs", default=None),
        levels: int = Input(description="how deeply the output nests its value", default=0),
    ) -> Any:
        out: dict[str, Any] = {"pid": os.getpid()}
        if file is not None:
            out["size"] = os.path.getsize(file)
        if levels:
            out["value"] = _nested(levels)
        return out
