"""Cog integration test emit_metric_deprecated: both call styles of the deprecated emit_metric()."""

import cog
from cog import BaseRunner, emit_metric


class Runner(BaseRunner):
    def run(self) -> str:
        emit_metric("output_tokens", 42)
        cog.emit_metric("input_tokens", 10)
        return "ok"
