"""Cog's integration tests of training and of input validation (replicate/cog integration-tests/tests),
i–z: train_basic, training_setup, input_validation_before_build and input_validation_before_start,
against our own models in tests/models/cogit_*.

`cog train -i n=42` is `POST /trainings {"input": {"n": 42}}` on a server in train mode. The two
input_validation tests check the Cog CLI's own checks before it builds or starts anything; what the
runtime does with the same inputs is the 422 checked here."""

from __future__ import annotations

import base64

import pytest

from helpers import assert_succeeded

TRAIN = ("--mode", "train")


# train_basic: train() writes n bytes of weights and returns them in a TrainingOutput.
def test_train_writes_weights(serve):
    server = serve("cogit_train_basic", extra_args=TRAIN)
    status, doc = server.get_json("/openapi.json")
    assert doc["components"]["schemas"]["TrainingInput"]["required"] == ["n"], doc
    status, body = server.post_json("/trainings", {"input": {"n": 42}})
    assert_succeeded(status, body)
    header, _, payload = body["output"]["weights"].partition(",")
    assert header == "data:application/octet-stream;base64", header
    assert base64.b64decode(payload) == b"a" * 42


def test_the_same_model_predicts_in_predict_mode(serve):
    server = serve("cogit_train_basic")
    status, body = server.predict({"s": "world"})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"


# training_setup: a trainer class with setup(), train() and run(): train mode runs setup() (its print
# in the setup logs) and then train(), not run().
def test_trainer_class_runs_setup_then_train(serve):
    server = serve("cogit_training_setup", extra_args=TRAIN)
    assert "Trainer is setting up." in server.health()["setup"]["logs"]
    status, body = server.post_json("/trainings", {"input": {"s": "world"}})
    assert_succeeded(status, body)
    assert body["output"] == "hello train world", body
    assert body["logs"] == "Trainer.train called.\n", body


# input_validation_before_build (the inputs the CLI refuses, as the runtime refuses them).
@pytest.mark.parametrize(
    "inputs, loc, msg, kind",
    [
        ({}, "prompt", "Field required", "value_error.missing"),
        ({"prompt": "hi", "count": 0}, "count", "0 is less than the minimum of 1", "value_error"),
        ({"prompt": "hi", "count": 99}, "count", "99 is greater than the maximum of 10", "value_error"),
        ({"prompt": "hi", "count": "lots"}, "count", '"lots" is not of type "integer"', "value_error"),
        ({"prompt": "hi", "size": "huge"}, "size", '"huge" is not one of ["small","medium","large"]', "value_error"),
        ({"prompt": "hi", "title": "toolong"}, "title", '"toolong" is longer than 5 characters', "value_error"),
        ({"prompt": "hi", "slug": "BAD"}, "slug", '"BAD" does not match "^[a-z]+$"', "value_error"),
        ({"prompt": "hi", "count": None}, "count", 'null is not of type "integer"', "value_error"),
        ({"prompt": "hi", "note": None}, "note", 'null is not of type "string"', "value_error"),
    ],
)
def test_invalid_prediction_inputs_are_422(serve, inputs, loc, msg, kind):
    server = serve("cogit_input_validation")
    status, body = server.predict(inputs)
    assert status == 422, body
    assert body == {"detail": [{"loc": ["body", "input", loc], "msg": msg, "type": kind}]}, body


def test_valid_prediction_inputs_and_an_unknown_one(serve):
    server = serve("cogit_input_validation")
    status, body = server.predict({"prompt": "hi", "count": 10, "size": "large", "title": "abcde", "slug": "ok"})
    assert_succeeded(status, body)
    assert body["output"] == "hi"
    # An input the model does not declare is dropped (with a warning in the server's log), as coglet
    # does since replicate/cog#2943; the CLI refuses it before sending.
    status, body = server.predict({"prompt": "hi", "nope": 1})
    assert_succeeded(status, body)
    assert body["output"] == "hi"
    assert "dropping an input the model does not declare" in server.stderr_text()


def test_invalid_training_input_is_422(serve):
    server = serve("cogit_input_validation", extra_args=TRAIN)
    status, body = server.post_json("/trainings", {"input": {"epochs": 0}})
    assert status == 422, body
    assert body == {
        "detail": [{"loc": ["body", "input", "epochs"], "msg": "0 is less than the minimum of 1", "type": "value_error"}]
    }, body
    status, body = server.post_json("/trainings", {"input": {"epochs": 3}})
    assert_succeeded(status, body)
    assert body["output"] == {"weights": "ok"}
