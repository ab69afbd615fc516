"""examples/train: `cogvisor serve --mode train` runs train() for POST /trainings with a TrainingInput
schema built from its signature; setup(weights) receives COG_WEIGHTS."""

from helpers import assert_succeeded


def test_training_runs_train_with_its_own_schema(serve):
    server = serve("train", extra_args=("--mode", "train"))
    status, doc = server.get_json("/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    assert schemas["TrainingInput"]["properties"]["steps"]["maximum"] == 100
    assert schemas["TrainingOutput"]["properties"]["weights"]["format"] == "uri"
    status, root = server.get_json("/")
    assert root.get("trainings_url") == "/trainings"
    status, body = server.post_json("/trainings", {"input": {"steps": 2}})
    assert_succeeded(status, body)
    assert body["output"]["steps"] == 2
    assert body["output"]["weights"] == "data:text/plain;base64,dHJhaW5lZCAy"  # "trained 2"
    assert "step 1 rate=0.1" in body["logs"]


def test_training_input_is_validated(serve):
    server = serve("train", extra_args=("--mode", "train"))
    status, body = server.post_json("/trainings", {"input": {"steps": 0}})
    assert status == 422
    assert body["detail"] == [
        {"loc": ["body", "input", "steps"], "msg": "0 is less than the minimum of 1", "type": "value_error"}
    ]


def test_predict_mode_gets_weights_from_cog_weights(serve):
    server = serve("train", env={"COG_WEIGHTS": "https://example.com/w.tar"})
    status, body = server.predict({"prompt": "yo"})
    assert_succeeded(status, body)
    assert body["output"] == "yo (weights=https://example.com/w.tar)"


PREDICT_MODE_ERROR = "this server runs in predict mode"
TRAIN_MODE_ERROR = "this server runs in train mode"


def mode_refusal(r, needle):
    assert r.status == 404, (r.status, r.body)
    assert r.headers.get("content-type") == "application/json", r.headers
    body = r.json()
    assert list(body) == ["error"], body
    assert needle in body["error"], body
    return body["error"]


def test_predict_mode_never_runs_predict_for_trainings(serve):
    server = serve("train")
    json_body = b'{"id": "t1", "input": {"steps": 2}}'
    headers = {"Content-Type": "application/json"}
    error = mode_refusal(server.request("POST", "/trainings", body=json_body, headers=headers), PREDICT_MODE_ERROR)
    assert "--mode train" in error, error
    mode_refusal(server.request("PUT", "/trainings/t1", body=json_body, headers=headers), PREDICT_MODE_ERROR)
    async_headers = {**headers, "Prefer": "respond-async"}
    mode_refusal(server.request("PUT", "/trainings/t1", body=json_body, headers=async_headers), PREDICT_MODE_ERROR)
    mode_refusal(server.request("GET", "/trainings/t1"), PREDICT_MODE_ERROR)
    mode_refusal(server.request("POST", "/trainings/t1/cancel"), PREDICT_MODE_ERROR)
    # Trainings are not advertised where they are not served.
    _, root = server.get_json("/")
    assert "trainings_url" not in root and root["predictions_url"] == "/predictions", root
    # Nothing ran under that id, and predictions are served as before.
    assert server.get_json("/predictions/t1") == (404, {"error": "Prediction not found"})
    status, body = server.predict({"prompt": "yo"})
    assert_succeeded(status, body)


def test_train_mode_never_runs_train_for_predictions(serve):
    server = serve("train", extra_args=("--mode", "train"))
    json_body = b'{"id": "p1", "input": {"prompt": "yo"}}'
    headers = {"Content-Type": "application/json"}
    error = mode_refusal(server.request("POST", "/predictions", body=json_body, headers=headers), TRAIN_MODE_ERROR)
    assert "without --mode train" in error, error
    mode_refusal(server.request("PUT", "/predictions/p1", body=json_body, headers=headers), TRAIN_MODE_ERROR)
    sse = {**headers, "Accept": "text/event-stream"}
    mode_refusal(server.request("POST", "/predictions", body=json_body, headers=sse), TRAIN_MODE_ERROR)
    mode_refusal(server.request("GET", "/predictions/p1"), TRAIN_MODE_ERROR)
    mode_refusal(server.request("POST", "/predictions/p1/cancel"), TRAIN_MODE_ERROR)
    assert server.get_json("/trainings/p1") == (404, {"error": "Training not found"})
    status, body = server.post_json("/trainings", {"input": {"steps": 1}})
    assert_succeeded(status, body)
