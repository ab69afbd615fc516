"""Cog integration test coglet_metrics_webhook: metrics recorded by an async prediction reach its
terminal webhook."""

from cog import BaseRunner, current_scope


class Runner(BaseRunner):
    def run(self) -> str:
        scope = current_scope()
        scope.record_metric("model_version", "v2.1")
        scope.record_metric("confidence", 0.95)
        return "ok"
