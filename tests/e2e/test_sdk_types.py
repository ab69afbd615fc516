"""examples/types over HTTP: coercion by annotation, defaults from Input(), secrets, Cog's 422 details
against the schema the worker builds from the signature."""

import json

from helpers import assert_succeeded


def test_inputs_are_coerced_and_defaults_applied(serve):
    server = serve("types")
    status, body = server.predict({"text": "abc", "ratio": 1, "api_key": "hunter2", "tags": ["x", "y"]})
    assert_succeeded(status, body)
    assert body["output"] == {
        "text": "abc", "count": 2, "ratio": 1.0, "flag": False, "mode": "fast", "tags": ["x", "y"],
        "maybe": None, "secret": "hunter2", "secret_type": "Secret", "ratio_type": "float",
    }


def test_unknown_inputs_are_ignored(serve):
    server = serve("types")
    status, body = server.predict({"text": "abc", "surprise": 1})
    assert_succeeded(status, body)


def details(server, input):
    status, body = server.predict(input)
    assert status == 422, body
    return body["detail"]


def test_missing_required_input(serve):
    server = serve("types")
    assert details(server, {}) == [
        {"loc": ["body", "input", "text"], "msg": "Field required", "type": "value_error.missing"}
    ]


def test_wrong_types_name_each_field(serve):
    server = serve("types")
    d = details(server, {"text": 5, "count": "abc"})
    assert {"loc": ["body", "input", "text"], "msg": '5 is not of type "string"', "type": "value_error"} in d
    assert {"loc": ["body", "input", "count"], "msg": '"abc" is not of type "integer"', "type": "value_error"} in d


def test_out_of_range_bad_choice_and_string_constraints(serve):
    server = serve("types")
    assert details(server, {"text": "abc", "count": 1000}) == [
        {"loc": ["body", "input", "count"], "msg": "1000 is greater than the maximum of 10", "type": "value_error"}
    ]
    d = details(server, {"text": "abc", "mode": "zzz"})
    assert d == [{"loc": ["body", "input", "mode"], "msg": '"zzz" is not one of ["fast","slow"]', "type": "value_error"}]
    assert details(server, {"text": ""}) == [
        {"loc": ["body", "input", "text"], "msg": '"" is shorter than 1 character', "type": "value_error"},
        {"loc": ["body", "input", "text"], "msg": '"" does not match "^[a-z ]+$"', "type": "value_error"},
    ]
    assert details(server, {"text": "UPPER"}) == [
        {"loc": ["body", "input", "text"], "msg": '"UPPER" does not match "^[a-z ]+$"', "type": "value_error"}
    ]
    d = details(server, {"text": "x" * 21})
    assert [(e["loc"], e["type"]) for e in d] == [(["body", "input", "text"], "value_error")], d


def test_non_object_input_is_a_root_error(serve):
    server = serve("types")
    r = server.request("POST", "/predictions", json.dumps({"input": [1]}).encode(), {"Content-Type": "application/json"})
    assert r.status == 422
    assert r.json()["detail"] == [
        {"loc": ["body", "input", "__root__"], "msg": '[1] is not of type "object"', "type": "value_error"}
    ]


def test_openapi_is_built_from_the_signature(serve):
    server = serve("types")
    status, doc = server.get_json("/openapi.json")
    assert status == 200
    schemas = doc["components"]["schemas"]
    props = schemas["Input"]["properties"]
    assert [n for n, _ in sorted(props.items(), key=lambda kv: kv[1]["x-order"])] == [
        "text", "count", "ratio", "flag", "mode", "tags", "maybe", "api_key", "old",
    ]
    assert schemas["Input"]["required"] == ["text"]
    assert props["count"] == {"title": "Count", "type": "integer", "default": 2, "description": "How many",
                              "minimum": 1, "maximum": 10, "x-order": 1}
    assert props["mode"]["allOf"] == [{"$ref": "#/components/schemas/mode"}]
    assert schemas["mode"]["enum"] == ["fast", "slow"]
    assert props["api_key"]["x-cog-secret"] is True and props["api_key"]["format"] == "password"
    assert props["maybe"]["nullable"] is True and props["old"]["deprecated"] is True
    assert schemas["Output"]["type"] == "object" and "secret_type" in schemas["Output"]["properties"]
