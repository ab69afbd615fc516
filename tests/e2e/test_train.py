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
