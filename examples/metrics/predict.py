"""Metrics and context: current_scope().metrics in every mode, record_metric, the request context."""

import cog
from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        n: int = Input(default=3, ge=0),
        bad_name: str = Input(default=""),
    ) -> dict:
        scope = cog.current_scope()
        for i in range(n):
            scope.metrics.record("tokens", 1, "incr")
            scope.metrics.record("steps", f"s{i}", "append")
        scope.metrics["timing.pre"] = 0.25
        scope.metrics["temporary"] = 1
        del scope.metrics["temporary"]
        self.record_metric("score", 0.5)
        cog.emit_metric("legacy", 7)
        if bad_name:
            scope.metrics[bad_name] = 1
        return {"context": scope.context}
