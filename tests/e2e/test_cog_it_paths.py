"""Cog's integration tests of file inputs and outputs (replicate/cog integration-tests/tests), i–z:
path_input, path_input_output, path_list_input, path_list_output, path_output, predict_output_file,
optional_path_input, many_inputs, predict_many_inputs_image and static_schema_gen, against our own
models in tests/models/cogit_*.

`cog run -i path=@file.txt` sends the file as a `data:` URL whose type comes from the file's
extension (Go's `mime.TypeByExtension`: `text/plain; charset=utf-8` for `.txt`, `image/jpeg` for
`.jpg`); the tests send the same. Without an upload URL a returned file comes back as a `data:` URL
(as coglet's crates/coglet-python/src/output.rs does); `cog run` writes it to `output.<ext>`."""

from __future__ import annotations

import base64

from helpers import assert_succeeded

TXT = "text/plain; charset=utf-8"


def data_url(mime: str, content: bytes | str) -> str:
    raw = content.encode() if isinstance(content, str) else content
    return f"data:{mime};base64,{base64.b64encode(raw).decode()}"


def decode(url: str) -> tuple[str, bytes]:
    header, sep, payload = url.partition(",")
    assert sep and header.startswith("data:") and header.endswith(";base64"), url[:80]
    return header[len("data:") : -len(";base64")], base64.b64decode(payload)


# path_input: a Path input is a local file the model can open.
def test_path_input_is_readable(serve):
    server = serve("cogit_path_input")
    status, body = server.predict({"path": data_url(TXT, "hello from file\n")})
    assert_succeeded(status, body)
    assert body["output"] == "hello from file\n"


# path_input_output: setup() state, a str and a Path in, a Path out whose content joins all three.
def test_path_input_and_path_output(serve):
    server = serve("cogit_path_in_out")
    status, body = server.predict({"text": "bar", "path": data_url(TXT, "baz\n")})
    assert_succeeded(status, body)
    mime, content = decode(body["output"])
    assert (mime, content) == ("text/plain", b"foobarbaz\n"), body["output"]


# path_list_input: list[Path], each a file, in order.
def test_list_of_paths_input(serve):
    server = serve("cogit_path_list_input")
    status, body = server.predict({"paths": [data_url(TXT, "test1\n"), data_url(TXT, "test2\n")]})
    assert_succeeded(status, body)
    assert body["output"] == "test1\ntest2\n"


# path_list_output: List[Path] is an array of files, in order (`cog run` writes output.0.txt ...).
def test_list_of_paths_output(serve):
    server = serve("cogit_path_list_output")
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert [decode(u) for u in body["output"]] == [
        ("text/plain", b"foo"),
        ("text/plain", b"bar"),
        ("text/plain", b"baz"),
    ], body["output"]


# path_output, predict_output_file: a returned image is the whole file, typed by its extension.
def test_path_output_is_the_whole_file(serve):
    server = serve("cogit_path_output")
    status, body = server.predict({})
    assert_succeeded(status, body)
    mime, content = decode(body["output"])
    assert mime == "image/bmp", mime
    assert content[:2] == b"BM" and len(content) == int.from_bytes(content[2:6], "little") > 195_000, len(content)


# optional_path_input: `Path | None = Input(default=None)` may be left out; the output is a file.
def test_optional_path_input_left_out(serve):
    server = serve("cogit_optional_path")
    status, doc = server.get_json("/openapi.json")
    prop = doc["components"]["schemas"]["Input"]["properties"]["test_image"]
    assert prop["format"] == "uri" and prop["nullable"] is True and prop["default"] is None, prop
    assert "required" not in doc["components"]["schemas"]["Input"]
    status, body = server.predict({})
    assert_succeeded(status, body)
    mime, content = decode(body["output"])
    assert mime == "image/webp" and content.startswith(b"RIFF"), (mime, content)
    status, body = server.predict({"test_image": data_url("image/webp", b"RIFFsomething")})
    assert_succeeded(status, body)
    assert decode(body["output"]) == ("image/webp", b"RIFFsomething")


# many_inputs, predict_many_inputs_image: required and defaulted inputs, two files (the image's
# extension comes from its data URL's type), str and int choices.
def test_many_kinds_of_input(serve):
    server = serve("cogit_many_inputs")
    inputs = {
        "no_default": "hello",
        "path": data_url(TXT, "world\n"),
        "image": data_url("image/jpeg", "fake image content\n"),
        "choices": "foo",
        "int_choices": 3,
    }
    status, body = server.predict(inputs)
    assert_succeeded(status, body)
    assert body["output"] == "hello default 20 world jpg foo 6"
    status, body = server.predict({**inputs, "choices": "baz", "int_choices": 6})
    assert status == 422, body
    assert body["detail"] == [
        {"loc": ["body", "input", "choices"], "msg": '"baz" is not one of ["foo","bar"]', "type": "value_error"},
        {"loc": ["body", "input", "int_choices"], "msg": "6 is not one of [3,4,5]", "type": "value_error"},
    ]


# static_schema_gen: the schema served without `cog build` has what the txtar reads from the image
# label, and predictions use the defaults and the overrides.
def test_schema_and_predictions_without_a_build(serve):
    server = serve("cogit_static_schema")
    status, doc = server.get_json("/openapi.json")
    assert status == 200 and doc["openapi"] == "3.0.2", doc
    s = doc["components"]["schemas"]
    props = s["Input"]["properties"]
    assert s["Input"]["required"] == ["text", "image"]
    assert props["text"]["type"] == "string"
    assert props["count"]["type"] == "integer" and props["count"]["default"] == 5
    assert (props["count"]["minimum"], props["count"]["maximum"]) == (1, 100)
    assert props["image"]["format"] == "uri"
    assert props["mode"]["allOf"] == [{"$ref": "#/components/schemas/mode"}]
    assert s["mode"]["enum"] == ["fast", "balanced", "quality"]
    assert s["Output"]["type"] == "string"
    image = data_url("image/jpeg", "fake image content\n")
    status, body = server.predict({"text": "hello", "image": image})
    assert_succeeded(status, body)
    assert body["output"] == "hello-5-fast-jpg"
    status, body = server.predict({"text": "world", "count": 3, "mode": "quality", "image": image})
    assert_succeeded(status, body)
    assert body["output"] == "world-3-quality-jpg"
