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


def test_a_sync_client_that_disconnects_cancels_its_prediction(serve):
    """The sync request drives its prediction on its own task: when the client goes away, the
    prediction is cancelled and still runs to its end (canceled, pollable, slot free again)."""
    import json
    import socket

    server = serve("cancel")
    body = json.dumps({"input": {"seconds": 60}}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(
            b"PUT /predictions/gone1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        wait_logs(server, "gone1", "started")
    finally:
        sock.close()
    body = wait_terminal(server, "gone1")
    assert body["status"] == "canceled", body
    assert "cancelled, cleaning up" in body["logs"]
    assert body["completed_at"], body
    status, body = server.predict({"seconds": 0})
    assert status == 200 and body["output"] == "finished", body
