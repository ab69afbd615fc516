"""Cog's integration tests coglet_metrics*, emit_metric_deprecated (replicate/cog
integration-tests/tests), black box: user metrics in the response and in the webhook, beside
predict_time. The name rules of coglet_metrics_validation are test_metrics.py::
test_metric_rules_fail_the_prediction_with_coglets_words. The models are tests/models/cogit_*metric*."""

from __future__ import annotations

import json

from helpers import assert_succeeded
from receiver import Receiver


def test_metrics_in_every_mode_are_in_the_response(serve):
    """coglet_metrics.txtar: replace, incr (1 + 2), append, a dot-path key nesting, dict-style access,
    and the runtime's predict_time."""
    server = serve("cogit_metrics")
    status, body = server.predict({})
    assert_succeeded(status, body)
    m = body["metrics"]
    assert m["temperature"] == 0.7 and m["token_count"] == 3, m
    assert m["tags"] == ["fast", "cached"], m
    assert m["timing"] == {"preprocess": 0.1}, m
    assert m["dict_metric"] == "hello", m
    assert isinstance(m["predict_time"], float), m


def test_metrics_reach_the_webhook(serve):
    """coglet_metrics_webhook.txtar: an async prediction's completed webhook carries its metrics."""
    receiver = Receiver().start()
    try:
        server = serve("cogit_metrics_webhook")
        r = server.request(
            "POST",
            "/predictions",
            body=json.dumps(
                {"id": "metrics-webhook-test", "webhook": receiver.url + "/hook", "webhook_events_filter": ["completed"]}
            ).encode(),
            headers={"Content-Type": "application/json", "Prefer": "respond-async"},
        )
        assert r.status == 202, r.body
        hooks = receiver.wait_terminal()
        assert [h["status"] for h in hooks] == ["succeeded"], hooks
        m = hooks[0]["metrics"]
        assert m["model_version"] == "v2.1" and m["confidence"] == 0.95, m
        assert isinstance(m["predict_time"], float), m
    finally:
        receiver.stop()


def test_deprecated_emit_metric_in_both_call_styles(serve):
    """emit_metric_deprecated.txtar: `from cog import emit_metric` and `cog.emit_metric` both record."""
    server = serve("cogit_emit_metric")
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["metrics"]["output_tokens"] == 42 and body["metrics"]["input_tokens"] == 10, body
