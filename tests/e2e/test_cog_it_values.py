"""Cog's integration tests of input and output types (replicate/cog integration-tests/tests), i–z:
int_input_output, python313, int_none_output, string_none_output, iterator_string_output,
string_list_input, union_type, optional_input, nested_output_types, pydantic2_output,
multi_file_schema, static_schema_fallback and string_predictor, each against our own model in
tests/models/cogit_*. `cog run -i x=y` there is `POST /predictions {"input": {"x": y}}` here."""

from __future__ import annotations

import pytest

from helpers import assert_succeeded


def schemas(server) -> dict:
    status, doc = server.get_json("/openapi.json")
    assert status == 200, doc
    return doc["components"]["schemas"]


# int_input_output, python313: `run:` with a BaseRunner; an int in, twice it out, negatives too.
@pytest.mark.parametrize("num", [10, -10, 5])
def test_int_input_doubled(serve, num):
    server = serve("cogit_int_runner")
    status, body = server.predict({"num": num})
    assert_succeeded(status, body)
    assert body["output"] == num * 2 and isinstance(body["output"], int), body


def test_int_input_refuses_a_string(serve):
    server = serve("cogit_int_runner")
    status, body = server.predict({"num": "ten"})
    assert status == 422, body
    assert body["detail"][0]["loc"] == ["body", "input", "num"], body


# int_none_output, string_none_output: a typed output that is None is a success with a null output
# (`cog run` prints "No output generated" for it).
@pytest.mark.parametrize("model", ["cogit_int_none", "cogit_str_none"])
def test_none_for_a_typed_output_succeeds_with_null(serve, model):
    server = serve(model)
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert "output" in body and body["output"] is None, body


# iterator_string_output: Iterator[str] is an array of the yielded items, in order.
def test_iterator_of_str_is_an_array(serve):
    server = serve("cogit_iterator_str")
    assert schemas(server)["Output"] == {
        "items": {"type": "string"},
        "title": "Output",
        "type": "array",
        "x-cog-array-type": "iterator",
    }
    status, body = server.predict({"count": 3})
    assert_succeeded(status, body)
    assert body["output"] == ["item-0", "item-1", "item-2"], body
    status, body = server.predict({"count": 0})
    assert_succeeded(status, body)
    assert body["output"] == [], body


# string_list_input: list[str] is an array input (the CLI turns `-i s=world` into ["world"]).
def test_list_of_str_input(serve):
    server = serve("cogit_string_list")
    assert schemas(server)["Input"]["properties"]["s"]["type"] == "array"
    status, body = server.predict({"s": ["world"]})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"
    status, body = server.predict({"s": ["a", "b", "c"]})
    assert_succeeded(status, body)
    assert body["output"] == "hello a|b|c"
    status, body = server.predict({"s": "world"})
    assert status == 422, body
    assert body["detail"] == [
        {"loc": ["body", "input", "s"], "msg": '"world" is not of type "array"', "type": "value_error"}
    ]


# union_type: `str | None = Input(default=None)`, with setup() state.
def test_pep604_optional_input(serve):
    server = serve("cogit_union")
    prop = schemas(server)["Input"]["properties"]["text"]
    assert prop["type"] == "string" and prop["nullable"] is True and prop["default"] is None, prop
    status, body = server.predict({"text": "world"})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"


# optional_input: `Optional[str] = Input(description=...)` with no default is not required and
# reaches the model as None.
def test_optional_input_without_default(serve):
    server = serve("cogit_optional_input")
    assert "required" not in schemas(server)["Input"]
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["output"] == "hello No One"
    status, body = server.predict({"s": "World"})
    assert_succeeded(status, body)
    assert body["output"] == "hello World"


# nested_output_types: a BaseModel output with every primitive, a list and Optional fields, one of
# them None (kept as null).
def test_basemodel_output_fields(serve):
    server = serve("cogit_nested_output")
    out = schemas(server)["Output"]
    assert out["type"] == "object" and set(out["properties"]) == {
        "name",
        "count",
        "score",
        "passed",
        "tags",
        "note",
        "extra",
    }, out
    status, body = server.predict({"name": "test"})
    assert_succeeded(status, body)
    assert body["output"] == {
        "name": "test",
        "count": 42,
        "score": 0.95,
        "passed": True,
        "tags": ["fast", "cached"],
        "note": "extra info",
        "extra": None,
    }, body


# pydantic2_output: a pydantic v2 model returned by run() is serialized through model_dump().
def test_pydantic_v2_output(serve):
    server = serve("cogit_pydantic_output")
    status, body = server.predict({"name": "alice", "score": 0.95})
    assert_succeeded(status, body)
    assert body["output"] == {"name": "alice", "score": 0.95, "tags": ["default"]}, body
    status, body = server.predict({"name": "bob"})
    assert_succeeded(status, body)
    assert body["output"]["score"] == 0.5, body


# multi_file_schema: the output model lives in a sibling module; the schema has its fields and
# `prompt` is required.
def test_output_model_from_a_sibling_module(serve):
    server = serve("cogit_multi_file")
    s = schemas(server)
    assert s["Input"]["required"] == ["prompt"]
    out = s["Output"]
    assert out["type"] == "object", out
    assert out["properties"]["text"]["type"] == "string"
    assert out["properties"]["score"]["type"] == "number"
    assert out["properties"]["tags"] == {"items": {"type": "string"}, "title": "Tags", "type": "array"}
    status, body = server.predict({"prompt": "hello"})
    assert_succeeded(status, body)
    assert body["output"] == {"text": "hello", "score": 1.0, "tags": ["default"]}, body


# static_schema_fallback: an output model imported from a local package (mypackage/__init__.py),
# which cog build's static parser cannot resolve; the model is served all the same.
def test_output_model_from_a_local_package(serve):
    server = serve("cogit_package_output")
    out = schemas(server)["Output"]
    assert out["type"] == "object" and out["properties"]["text"]["type"] == "string", out
    status, body = server.predict({"prompt": "hello"})
    assert_succeeded(status, body)
    assert body["output"] == {"text": "hello world"}, body


# string_predictor (and the predict_json_* tests, whose model is the same): one prediction, and a
# wrong input name answers 422 naming the missing required field.
def test_string_predictor(serve):
    server = serve("cogit_hello")
    status, body = server.predict({"s": "world"})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"
    status, body = server.predict({"s": "sackfield"})
    assert_succeeded(status, body)
    assert body["output"] == "hello sackfield"
    status, body = server.predict({"wrong": "value"})
    assert status == 422, body
    assert body["detail"] == [
        {"loc": ["body", "input", "s"], "msg": "Field required", "type": "value_error.missing"}
    ]
