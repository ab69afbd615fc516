"""examples/metrics: current_scope().metrics in every mode, record_metric, emit_metric, context, and
Cog's metric name rules failing the prediction with coglet's messages."""

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
    assert body["error"] == "ValueError: metric name segment 'bad__name' must not contain consecutive underscores"
    assert body["metrics"]["tokens"] == 1
    status, body = server.predict({"n": 1, "bad_name": "predict_time"})
    assert body["status"] == "failed" and body["error"] == "ValueError: 'predict_time' is reserved by the runtime"


# coglet 0.23.1's error for each rule (its response says "Prediction failed: Prediction failed: " first;
# ours has no doubled prefix). The cases of Cog's integration test coglet_metrics_validation, and more.
RULES = [
    ("_invalid", "ValueError: metric name segment '_invalid' must start with a letter"),
    ("foo__bar", "ValueError: metric name segment 'foo__bar' must not contain consecutive underscores"),
    ("invalid_", "ValueError: metric name segment 'invalid_' must end with a letter or digit"),
    ("a-b", "ValueError: metric name segment 'a-b' contains invalid character '-'"),
    (".invalid", "ValueError: metric name must not start with a dot"),
    ("invalid.", "ValueError: metric name must not end with a dot"),
    ("foo..bar", "ValueError: metric name must not contain empty segments (consecutive dots)"),
    ("predict_time", "ValueError: 'predict_time' is reserved by the runtime"),
    ("cog.system", "ValueError: the 'cog.' prefix is reserved for system metrics"),
    ("a.b.c.d.e", "ValueError: metric name must have at most 4 dot-separated segments (got 5)"),
    ("a" * 129, "ValueError: metric name must be 128 characters or fewer (got 129 characters)"),
    ("", "ValueError: metric name must not be empty"),
]

CASES = [
    ("type_change", "TypeError: Metric 'count' has type int, cannot set to str without deleting first"),
    ("incr_str", "TypeError: Increment mode requires int or float, got str"),
    ("bad_mode", "TypeError: Invalid metric mode: 'sum'. Expected 'replace', 'incr', or 'append'."),
    ("bad_value", "TypeError: Unsupported metric value type: tuple. Expected bool, int, float, str, list, or dict."),
    ("none_value", "TypeError: Unsupported metric value type: NoneType. Expected bool, int, float, str, list, or dict."),
]


def test_metric_rules_fail_the_prediction_with_coglets_words(serve):
    server = serve("metric_rules")
    for name, error in RULES:
        status, body = server.predict({"name": name})
        assert status == 200 and body["status"] == "failed", (name, body)
        assert body["error"] == error, (name, body)
    for case, error in CASES:
        status, body = server.predict({"case": case})
        assert status == 200 and body["status"] == "failed", (case, body)
        assert body["error"] == error, (case, body)
    # A type change keeps the value recorded before it.
    status, body = server.predict({"case": "type_change"})
    assert body["metrics"]["count"] == 1, body
    status, body = server.predict({"name": "valid_name"})
    assert_succeeded(status, body)
    assert body["metrics"]["valid_name"] == 1, body
