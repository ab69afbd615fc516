"""The schema the worker builds when there is no .cog/openapi_schema.json, as the server uses it:
served at /openapi.json, validating inputs, deciding array outputs and SSE permission."""

import json

from helpers import assert_succeeded


def test_hello_schema_is_built_and_served(serve):
    server = serve("hello")
    status, doc = server.get_json("/openapi.json")
    assert status == 200
    assert doc["openapi"] == "3.0.2" and doc["info"]["title"] == "Cog"
    assert doc["components"]["schemas"]["Input"]["properties"]["text"] == {
        "title": "Text", "type": "string", "default": "world", "description": "Who to greet", "x-order": 0,
    }
    assert doc["components"]["schemas"]["Output"] == {"title": "Output", "type": "string"}
    assert "x-cog-streaming" not in doc["paths"]["/predictions"]["post"]


def test_generated_schema_validates(serve):
    server = serve("hello")
    status, body = server.predict({"text": 5})
    assert status == 422
    assert body == {"detail": [{"loc": ["body", "input", "text"], "msg": '5 is not of type "string"', "type": "value_error"}]}


def test_streaming_decorator_allows_sse_and_iterator_output_is_an_array(serve):
    server = serve("async-stream")
    status, doc = server.get_json("/openapi.json")
    assert doc["paths"]["/predictions"]["post"]["x-cog-streaming"] is True
    assert doc["components"]["schemas"]["Output"] == {
        "title": "Output", "type": "array", "items": {"type": "string"},
        "x-cog-array-type": "iterator", "x-cog-array-display": "concatenate",
    }
    r = server.request(
        "POST", "/predictions", json.dumps({"input": {"prompt": "a b", "delay": 0}}).encode(),
        {"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    assert r.status == 200 and b"event: completed" in r.body, r.body


def test_sse_is_refused_without_the_streaming_decorator(serve):
    server = serve("hello")
    r = server.request(
        "POST", "/predictions", json.dumps({"input": {}}).encode(),
        {"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    assert r.status == 406, r.body


def test_one_item_from_an_array_schema_is_still_an_array(serve):
    server = serve("async-stream")
    status, body = server.predict({"prompt": "single", "delay": 0})
    assert_succeeded(status, body)
    assert body["output"] == ["single "]
