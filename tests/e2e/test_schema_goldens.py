"""A model directory that was never built (no .cog/openapi_schema.json) serves the same /openapi.json as
after `cog build`, and the server validates against it as coglet does.

The expected documents are tests/models/schema_*/openapi.golden.json, derived from cog 0.23.1's Go
generator (python/tests/test_schema_goldens.py says where each field comes from)."""

import json

import pytest

from helpers import MODELS, assert_succeeded
from test_sse import read_events


def differences(got, want, path="$"):
    """Where two JSON values differ, types included: 1 and 1.0 are written differently."""
    if type(got) is not type(want):
        return [f"{path}: got {got!r}, want {want!r}"]
    if isinstance(got, dict):
        out = []
        for key in sorted(set(got) | set(want)):
            if key not in got:
                out.append(f"{path}.{key}: missing")
            elif key not in want:
                out.append(f"{path}.{key}: unexpected {got[key]!r}")
            else:
                out += differences(got[key], want[key], f"{path}.{key}")
        return out
    if isinstance(got, list):
        if len(got) != len(want):
            return [f"{path}: got {got!r}, want {want!r}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{path}[{i}]")]
    return [] if got == want else [f"{path}: got {got!r}, want {want!r}"]


def assert_serves_golden(server, name):
    assert not (MODELS / name / ".cog").exists(), "a never-built model directory"
    status, doc = server.get_json("/openapi.json")
    assert status == 200, doc
    want = json.loads((MODELS / name / "openapi.golden.json").read_text())
    diffs = differences(doc, want)
    assert diffs == [], "\n".join(diffs)


@pytest.mark.parametrize("name", ["schema_inputs", "schema_iterator", "schema_stream", "schema_list_path"])
def test_never_built_model_serves_the_cog_build_document(serve, name):
    assert_serves_golden(serve(name), name)


@pytest.mark.parametrize("mode", ["predict", "train"])
def test_predict_and_train_serve_one_merged_document_in_both_modes(serve, mode):
    server = serve("schema_train", extra_args=("--mode", mode))
    assert_serves_golden(server, "schema_train")
    if mode == "predict":
        status, body = server.predict({"prompt": "hi"})
        assert_succeeded(status, body)
        assert body["output"] == "hi (fast)"
    else:
        status, body = server.post_json("/trainings", {"input": {"data": "d", "steps": 2}})
        assert_succeeded(status, body)
        assert body["output"]["steps"] == 2
        status, body = server.post_json("/trainings", {"input": {"data": "d", "kind": "half"}})
        assert status == 422, body
        assert body["detail"] == [
            {"loc": ["body", "input", "kind"], "msg": '"half" is not one of ["lora","full"]', "type": "value_error"}
        ]


VALID = {"prompt": "a cat", "seed": 7, "token": "t0k", "images": ["data:text/plain;base64,aGk="],
         "photo": "data:text/plain;base64,aGk="}


def test_none_defaults_validate_as_coglet(serve):
    server = serve("schema_inputs")
    # Input(default=None) on int and on Path: required, as after cog build.
    status, body = server.predict({"prompt": "a cat", "token": "t", "images": []})
    assert status == 422, body
    assert body == {"detail": [
        {"loc": ["body", "input", "seed"], "msg": "Field required", "type": "value_error.missing"},
        {"loc": ["body", "input", "photo"], "msg": "Field required", "type": "value_error.missing"},
    ]}
    # Secret = Input(default=None) may be left out: the model gets None. Optional without default too.
    status, body = server.predict(VALID)
    assert_succeeded(status, body)
    assert body["output"]["text"] == "a cat seed=7 key=False token=t0k style=vivid steps=20 extra=None either=None"
    assert body["output"]["count"] == 1 and body["output"]["scores"] == {"steps": 20}
    # coglet's validator does not read OpenAPI's `nullable`: an explicit null for a string is refused.
    status, body = server.predict({**VALID, "api_key": None})
    assert status == 422, body
    assert body["detail"] == [
        {"loc": ["body", "input", "api_key"], "msg": 'null is not of type "string"', "type": "value_error"}
    ]


def test_choices_bounds_and_unions_validate_as_coglet(serve):
    server = serve("schema_inputs")
    status, body = server.predict({**VALID, "steps": 30, "temperature": 2.5, "value": 1.5})
    assert status == 422, body
    by_field = {d["loc"][2]: d for d in body["detail"]}
    assert set(by_field) == {"steps", "temperature", "value"}, body
    assert by_field["steps"]["msg"] == "30 is not one of [10,20,50]"
    assert by_field["temperature"]["msg"] == "2.5 is greater than the maximum of 2"
    status, body = server.predict({**VALID, "value": 3, "either": 0.5, "api_key": "k", "style": "natural"})
    assert_succeeded(status, body)
    assert "key=True" in body["output"]["text"] and "either=0.5" in body["output"]["text"]


def test_iterators_and_list_paths_are_arrays_of_files(serve):
    server = serve("schema_iterator")
    status, body = server.predict({"frames": 2})
    assert_succeeded(status, body)
    assert body["output"] == ["data:text/plain;base64,ZnJhbWUgMA==", "data:text/plain;base64,ZnJhbWUgMQ=="]
    server = serve("schema_list_path")
    status, body = server.predict({"files": ["data:text/plain;base64,aGk="]})
    assert_succeeded(status, body)
    assert body["output"] == ["data:application/octet-stream;base64,aGk="]


def test_streaming_decorator_allows_sse(serve):
    server = serve("schema_stream")
    events, _ = read_events(server, {"input": {"prompt": "one two"}})
    assert events[-1][0] == "completed", events
