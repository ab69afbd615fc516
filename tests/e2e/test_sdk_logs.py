"""Logs as the SDK routes them: a partial line belongs to its own prediction (coglet leaks it into the
next one) and a failed prediction keeps its logs, subprocess output included (coglet reports "")."""

from helpers import assert_succeeded


def test_partial_line_is_flushed_at_the_end_of_its_prediction(serve):
    server = serve("logs")
    status, body = server.predict({"text": "one"})
    assert_succeeded(status, body)
    assert body["logs"] == "no-newline-one"
    status, body = server.predict({"text": "two"})
    assert_succeeded(status, body)
    assert body["logs"] == "no-newline-two"


def test_failed_prediction_keeps_its_logs(serve):
    server = serve("logs")
    status, body = server.predict({"mode": "fail"})
    assert status == 200 and body["status"] == "failed", body
    assert body["error"] == "RuntimeError: failed on purpose"
    assert "before failing\n" in body["logs"]
    assert "child before failing\n" in body["logs"]
    assert "Traceback" in body["logs"]
