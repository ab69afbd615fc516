"""Webhooks against a real local receiver: order, filter, bearer token, traceparent, coalesced logs under
throttling, terminal retries, and the terminal webhook of an async prediction during SIGTERM."""

from __future__ import annotations

import json
import signal

import pytest

from helpers import wait_for
from receiver import Receiver

TERMINAL = ("succeeded", "failed", "canceled")


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def post(server, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    r = server.request("POST", "/predictions", body=json.dumps(body).encode(), headers=h)
    return r.status, r.json()


def test_webhooks_arrive_in_order_and_the_terminal_one_is_last(serve, receiver):
    server = serve("streaming")
    status, body = post(
        server,
        {"id": "w1", "input": {"n": 4, "delay": 0.15}, "webhook": receiver.url + "/hook"},
        {"Prefer": "respond-async"},
    )
    assert status == 202, body
    hooks = receiver.wait_terminal()
    statuses = [h["status"] for h in hooks]
    assert statuses[0] == "processing", statuses
    assert statuses[-1] == "succeeded" and statuses.count("succeeded") == 1, statuses
    assert all(s == "processing" for s in statuses[:-1]), statuses
    # Each webhook shows at least what the one before it did.
    outputs = [h.get("output", []) for h in hooks[:-1]]
    assert all(len(a) <= len(b) for a, b in zip(outputs, outputs[1:])), outputs
    final = hooks[-1]
    assert final["id"] == "w1"
    assert final["output"] == ["t0", "t1", "t2", "t3"]
    assert final["logs"] == "tok 0\ntok 1\ntok 2\ntok 3\n"
    assert final["input"] == {"n": 4, "delay": 0.15}
    assert isinstance(final["metrics"]["predict_time"], float)
    for key in ("created_at", "started_at", "completed_at"):
        assert isinstance(final[key], str), final
    assert all(r.path == "/hook" for r in receiver.got())
    assert all(r.headers["content-type"] == "application/json" for r in receiver.got())
    assert all(r.headers["user-agent"].startswith("coglet/") for r in receiver.got())


def test_a_sync_prediction_sends_webhooks_too(serve, receiver):
    server = serve("hello")
    status, body = server.predict({"text": "x"}, webhook=receiver.url)
    assert status == 200 and body["status"] == "succeeded", body
    hooks = receiver.wait_terminal()
    assert hooks[-1]["output"] == body["output"]


def test_the_filter_selects_events(serve, receiver):
    server = serve("streaming")
    post(
        server,
        {"id": "f1", "input": {"n": 3, "delay": 0.05}, "webhook": receiver.url, "webhook_events_filter": ["completed"]},
        {"Prefer": "respond-async"},
    )
    hooks = receiver.wait_terminal()
    wait_for(lambda: server.get_json("/predictions/f1")[1].get("status") == "succeeded", what="f1 to end")
    assert [h["status"] for h in receiver.webhooks()] == ["succeeded"], hooks

    other = Receiver().start()
    try:
        post(
            server,
            {"id": "f2", "input": {"n": 3, "delay": 0.05}, "webhook": other.url, "webhook_events_filter": ["start"]},
            {"Prefer": "respond-async"},
        )
        wait_for(lambda: server.get_json("/predictions/f2")[1].get("status") == "succeeded", what="f2 to end")
        wait_for(lambda: other.webhooks(), what="the start webhook")
        # The prediction has ended and its sender with it: exactly one webhook, the start.
        wait_for(lambda: server.health()["status"] == "READY", what="READY")
        hooks = other.webhooks()
        assert len(hooks) == 1 and hooks[0]["status"] == "processing", hooks
        assert "output" not in hooks[0]
    finally:
        other.stop()


def test_bad_webhook_fields_are_422_naming_the_field(serve, receiver):
    server = serve("hello")
    status, body = server.predict({"text": "x"}, webhook="ftp://example.com/hook")
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "webhook"]
    assert "ftp://example.com/hook" in body["detail"][0]["msg"]
    status, body = server.predict({"text": "x"}, webhook=receiver.url, webhook_events_filter=["start", "nope"])
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "webhook_events_filter", "1"]
    assert "nope" in body["detail"][0]["msg"]
    assert receiver.got() == []


def test_bearer_token_and_traceparent_are_sent(serve, receiver):
    server = serve("hello", env={"WEBHOOK_AUTH_TOKEN": "s3cret"})
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    status, body = post(
        server,
        {"input": {"text": "x"}, "webhook": receiver.url},
        {"traceparent": traceparent, "tracestate": "vendor=1"},
    )
    assert status == 200, body
    receiver.wait_terminal()
    for r in receiver.got():
        assert r.headers["authorization"] == "Bearer s3cret"
        assert r.headers["traceparent"] == traceparent
        assert r.headers["tracestate"] == "vendor=1"


def test_no_authorization_header_without_a_token(serve, receiver):
    server = serve("hello")
    server.predict({"text": "x"}, webhook=receiver.url)
    receiver.wait_terminal()
    assert all("authorization" not in r.headers for r in receiver.got())


def test_throttled_logs_are_coalesced_into_a_later_webhook(serve, receiver):
    server = serve("chatty", env={"COG_THROTTLE_RESPONSE_INTERVAL": "0.3"})
    # One line right after start (inside the throttle window), then 2 s of silence: coglet drops that
    # line's webhook; here it arrives in a `processing` webhook once the interval has passed.
    post(
        server,
        {"id": "l1", "input": {"lines": 1, "tail": 2.0}, "webhook": receiver.url},
        {"Prefer": "respond-async"},
    )
    hooks = receiver.wait_terminal()
    with_line = [h for h in hooks if h["status"] == "processing" and "line 0" in h["logs"]]
    assert with_line, hooks


def test_many_logs_make_few_webhooks_spaced_by_the_interval(serve, receiver):
    server = serve("chatty", env={"COG_THROTTLE_RESPONSE_INTERVAL": "0.3"})
    post(
        server,
        {"id": "l2", "input": {"lines": 200, "interval": 0.005}, "webhook": receiver.url},
        {"Prefer": "respond-async"},
    )
    receiver.wait_terminal()
    requests = receiver.got("POST")
    bodies = [r.json() for r in requests]
    assert bodies[-1]["status"] == "succeeded"
    assert bodies[-1]["logs"].count("\n") == 200
    # Log webhooks only: the one carrying the output is sent at once, not throttled (docs/http-api.md).
    processing = [r for r, b in zip(requests, bodies) if b["status"] == "processing" and b.get("output") is None]
    # ~1 s of logs at one webhook per 0.3 s: the start, then at most a handful.
    assert len(processing) <= 8, len(processing)
    gaps = [b.at - a.at for a, b in zip(processing, processing[1:])]
    # Sends are spaced by the interval; arrival times jitter on a loaded machine, so one short gap (a send
    # delayed, then the next on time) is tolerated. Without throttling every gap would be ~5 ms.
    assert sum(g < 0.25 for g in gaps) <= 1, gaps
    # Logs only grow, and no line is lost between webhooks.
    logs = [b["logs"] for b in bodies]
    assert all(b.startswith(a) for a, b in zip(logs, logs[1:]))


def test_the_terminal_webhook_is_retried_after_503s(serve):
    seen = {"terminal": 0}

    def script(req):
        if json.loads(req.body).get("status") in TERMINAL:
            seen["terminal"] += 1
            if seen["terminal"] <= 2:
                return 503
        return None

    receiver = Receiver(script).start()
    try:
        server = serve("hello")
        status, body = server.predict({"text": "x"}, webhook=receiver.url, webhook_events_filter=["completed"])
        assert status == 200, body
        wait_for(lambda: len(receiver.got()) >= 3, timeout=30, what="three terminal attempts")
        attempts = receiver.got()
        assert len(attempts) == 3
        assert all(r.json()["status"] == "succeeded" for r in attempts)
        gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:])]
        # Backoff 0.2 s then 0.4 s.
        assert gaps[0] >= 0.15 and gaps[1] >= 0.35, gaps
    finally:
        receiver.stop()


def test_sigterm_during_an_async_prediction_still_delivers_completed(serve, receiver):
    server = serve("slow")
    status, body = post(
        server,
        {"id": "t1", "input": {"seconds": 1.5}, "webhook": receiver.url},
        {"Prefer": "respond-async"},
    )
    assert status == 202, body
    wait_for(lambda: receiver.webhooks(), what="the start webhook")
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=60) == 0
    hooks = receiver.webhooks()
    assert hooks[-1]["status"] == "succeeded", hooks
    assert hooks[-1]["output"] == "done"


def test_a_flood_of_logs_sends_few_webhooks(serve, receiver):
    # coglet-under-faults scenario 10: coglet builds a webhook per printed line (hundreds of sends,
    # gigabytes for 20 MB of prints). Here sends are bounded by the throttle interval.
    server = serve("chatty")
    post(
        server,
        {"id": "flood", "input": {"lines": 100000}, "webhook": receiver.url},
        {"Prefer": "respond-async"},
    )
    hooks = receiver.wait_terminal(timeout=120)
    requests = receiver.got("POST")
    span = requests[-1].at - requests[0].at
    assert hooks[-1]["logs"].count("\n") == 100000
    # start + one per 0.5 s + terminal, with slack for the time a send itself takes.
    assert len(hooks) <= span / 0.5 + 4, (len(hooks), span)


def test_a_bad_throttle_interval_stops_the_server_at_start():
    from helpers import MODELS, last_line, run_to_exit

    r = run_to_exit(["serve", str(MODELS / "chatty")], env={"COG_THROTTLE_RESPONSE_INTERVAL": "soon"})
    assert r.returncode != 0
    line = last_line(r.stderr)
    assert "COG_THROTTLE_RESPONSE_INTERVAL" in line and "soon" in line, line
