"""examples/metrics: current_scope().metrics in every mode, record_metric, emit_metric, context, and
Cog's metric name rules failing the prediction."""

from helpers import assert_succeeded


def test_metrics_are_merged_into_the_response(serve):
    server = serve("metrics")
    status, body = server.predict({"n": 3}, context={"user": "u1", "trace": "t"})
    assert_succeeded(status, body)
    m = body["metrics"]
    assert m["tokens"] == 3 and m["steps"] == ["s0", "s1", "s2"]
    assert m["timing"] == {"pre": 0.25} and m["score"] == 0.5 and m["legacy"] == 7
    assert "temporary" not in m and m["predict_time"] >= 0
    assert body["output"] == {"context": {"trace": "t", "user": "u1"}}
    assert "emit_metric() is deprecated" in body["logs"]


def test_context_is_empty_when_absent(serve):
    server = serve("metrics")
    status, body = server.predict({"n": 0})
    assert_succeeded(status, body)
    assert body["output"] == {"context": {}}


def test_bad_metric_name_fails_the_prediction_and_keeps_earlier_metrics(serve):
    server = serve("metrics")
    status, body = server.predict({"n": 1, "bad_name": "bad__name"})
    assert status == 200 and body["status"] == "failed", body
    assert "bad__name" in body["error"] and body["error"].startswith("ValueError: Metric name")
    assert body["metrics"]["tokens"] == 1
    status, body = server.predict({"n": 1, "bad_name": "predict_time"})
    assert body["status"] == "failed" and "reserved" in body["error"], body
