"""Cancelling running predictions over HTTP: sync (CancelationException injected into the predict
thread, even past `except Exception`) and async (the task is cancelled); both end `canceled`."""

from helpers import wait_for


def post(server, path, body, headers=None):
    import json

    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    r = server.request("POST", path, json.dumps(body).encode(), h)
    return r.status, r.json() if r.body else None


def start_async(server, pid, input):
    status, body = post(server, "/predictions", {"id": pid, "input": input}, {"Prefer": "respond-async"})
    assert status == 202, body


def wait_logs(server, pid, text):
    def check():
        status, body = server.get_json(f"/predictions/{pid}")
        return body if status == 200 and text in (body.get("logs") or "") else None

    return wait_for(check, timeout=30, what=f"{text!r} in the logs of {pid}")


def wait_terminal(server, pid):
    def check():
        status, body = server.get_json(f"/predictions/{pid}")
        return body if body.get("status") in ("succeeded", "failed", "canceled") else None

    return wait_for(check, timeout=30, what=f"{pid} to end")


def test_sync_prediction_is_canceled(serve):
    server = serve("cancel")
    start_async(server, "s1", {"seconds": 60})
    wait_logs(server, "s1", "started")
    status, _ = post(server, "/predictions/s1/cancel", {})
    assert status == 200
    body = wait_terminal(server, "s1")
    assert body["status"] == "canceled", body
    assert "cancelled, cleaning up" in body["logs"]
    status, body = server.predict({"seconds": 0})
    assert status == 200 and body["output"] == "finished", body


def test_except_exception_does_not_swallow_the_cancel(serve):
    server = serve("cancel")
    start_async(server, "s2", {"seconds": 60, "swallow_generic": True})
    wait_logs(server, "s2", "started")
    post(server, "/predictions/s2/cancel", {})
    assert wait_terminal(server, "s2")["status"] == "canceled"


def test_async_prediction_is_canceled(serve):
    server = serve("async-stream")
    start_async(server, "a1", {"prompt": "one two three four five", "delay": 5})
    wait_logs(server, "a1", "] one")
    status, _ = post(server, "/predictions/a1/cancel", {})
    assert status == 200
    body = wait_terminal(server, "a1")
    assert body["status"] == "canceled", body
    status, body = server.predict({"prompt": "again", "delay": 0})
    assert status == 200 and body["output"] == ["again "], body
