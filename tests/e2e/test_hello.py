"""examples/hello end to end: health, discovery, one prediction, many back-to-back predictions."""

from helpers import assert_health_shape, assert_succeeded


def test_ready_health_has_the_documented_shape(serve):
    server = serve("hello")
    h = server.health()
    assert_health_shape(h)
    assert h["status"] == "READY"
    assert h["setup"]["status"] == "succeeded"
    assert "completed_at" in h["setup"]
    assert isinstance(h["worker"]["pid"], int)
    assert h["worker"]["generation"] >= 1
    assert h["slots"] == {"total": 1, "busy": 0, "poisoned": []}


def test_setup_output_is_in_setup_logs(serve):
    server = serve("hello")
    assert "loading" in server.health()["setup"].get("logs", ""), server.health()


def test_discovery_document(serve):
    server = serve("hello")
    status, body = server.get_json("/")
    assert status == 200, body
    assert body["predictions_url"] == "/predictions"
    assert body["healthcheck_url"] == "/health-check"


def test_prediction_returns_output_and_logs(serve):
    server = serve("hello")
    status, body = server.predict({"text": "cogvisor"})
    assert_succeeded(status, body)
    assert body["output"] == "hello cogvisor"
    assert "greeting cogvisor" in body["logs"]
    assert body["metrics"]["predict_time"] >= 0


def test_default_input(serve):
    server = serve("hello")
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"


def test_request_id_is_echoed(serve):
    server = serve("hello")
    status, body = server.predict({"text": "x"}, id="my-pred_1.0")
    assert_succeeded(status, body)
    assert body["id"] == "my-pred_1.0"


def test_fifty_back_to_back_predictions_never_see_409(serve):
    server = serve("hello")
    for i in range(50):
        status, body = server.predict({"text": f"n{i}"})
        assert status == 200, f"request {i}: {status} {body}"
        assert body["status"] == "succeeded", f"request {i}: {body}"
        assert body["output"] == f"hello n{i}"
    h = server.health()
    assert h["status"] == "READY", h
    assert h["slots"]["busy"] == 0, h
