"""An exception in predict() is a failed prediction (HTTP 200), and the server stays READY."""


def test_exception_is_a_failed_prediction(serve):
    server = serve("failing")
    pid = server.health()["worker"]["pid"]
    status, body = server.predict({})
    assert status == 200, body
    assert body["status"] == "failed", body
    assert "bad input value" in body["error"], body
    assert isinstance(body["id"], str) and body["id"], body
    assert "output" not in body or body["output"] is None, body

    h = server.health()
    assert h["status"] == "READY", h
    assert h["worker"]["pid"] == pid, "an exception must not cost the worker"

    # The slot is free again at once.
    status, body = server.predict({})
    assert status == 200 and body["status"] == "failed", body
