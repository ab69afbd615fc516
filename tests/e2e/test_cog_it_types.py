"""Cog's integration tests that run `cog predict`/`cog run` on one model and check its output
(replicate/cog integration-tests/tests): predictor styles (backwards_compat_*, function_predictor,
async_*), input and output types, file inputs and outputs, and the schema the runtime serves. A
`cog predict -i x=y` is `POST /predictions {"input": {"x": y}}`; a file `-i f=@name` is a data URL.
Each test names the txtar it reproduces; the models are tests/models/cogit_*."""

from __future__ import annotations

import base64
import threading
import time

import pytest

from helpers import assert_succeeded


@pytest.fixture
def serve(serve, server_tmpdir):
    """The suite's `serve`, with TMPDIR in the test's own directory: these models write their outputs
    with tempfile.mkdtemp(), as the txtars' do, and nothing may be left in the system temp dir."""
    tmpdir = server_tmpdir

    def start(model, env=None, **kwargs):
        return serve(model, env={"TMPDIR": str(tmpdir), **(env or {})}, **kwargs)

    return start


def data_url(content: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(content).decode()}"


def decode_data_url(url: str) -> tuple[str, bytes]:
    assert url.startswith("data:"), url[:80]
    head, payload = url[5:].split(",", 1)
    assert head.endswith(";base64"), head
    return head[: -len(";base64")], base64.b64decode(payload)


def output_of(server, input: dict):
    status, body = server.predict(input)
    assert_succeeded(status, body)
    return body["output"]


# --------------------------------------------------------------------------------------------------
# Predictor styles


STYLES = [
    ("cogit_bc_legacy", {"name": "world"}, "hello world", "backwards_compat_full_legacy, backwards_compat_base_predictor"),
    ("cogit_bc_runner", {"name": "world"}, "hello world", "backwards_compat_cog_predict"),
    ("cogit_bc_predict_key", {"s": "world"}, "hello world", "backwards_compat_predict_key"),
    ("cogit_bc_predictor_run", {"name": "world"}, "hello world", "backwards_compat_predictor_run_method"),
    ("cogit_bc_runner_predict", {"name": "world"}, "hello world", "backwards_compat_runner_predict_method"),
    ("cogit_function", {"prompt": "world"}, "HELLO WORLD", "function_predictor"),
    ("cogit_async_runner", {"s": "world"}, "hello world", "async_predictor"),
    ("cogit_experimental_warning", {"s": "world"}, "hello world", "experimental_feature_warning"),
]


@pytest.mark.parametrize(("model", "input", "output", "txtar"), STYLES, ids=[row[0] for row in STYLES])
def test_predictor_styles(serve, model, input, output, txtar):
    server = serve(model)
    assert output_of(server, input) == output, txtar


def test_async_sleep_runs_five_at_once(serve):
    """async_sleep.txtar: an async run() with `concurrency.max: 5`; five 1 s predictions overlap."""
    server = serve("cogit_async_sleep")
    assert output_of(server, {"s": "sleepyhead", "sleep": 0.1}) == "wake up sleepyhead"
    results: list = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda i=i: results.append(server.predict({"s": f"n{i}", "sleep": 1.0})))
        for i in range(5)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - started
    assert sorted(b["output"] for _, b in results) == [f"wake up n{i}" for i in range(5)], results
    assert elapsed < 4, f"five 1 s async predictions took {elapsed:.1f} s: they did not run together"


def test_async_generator_output_is_collected_in_the_response(serve):
    """async_generator_precollect.txtar: five async-yielded chunks, all in the sync response, and a
    predict_time covering the whole generation (5 x 0.1 s)."""
    server = serve("cogit_async_generator")
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["output"] == [f"chunk-{i}" for i in range(5)], body
    assert body["metrics"]["predict_time"] >= 0.5, body


def test_concatenate_iterator_output(serve):
    """concatenate_iterator_output.txtar: each yielded token is an element of the output array."""
    server = serve("cogit_concat_iterator")
    assert output_of(server, {"prompt": "hello"}) == ["hello", " world", " !"]


# --------------------------------------------------------------------------------------------------
# Input and output types


def test_bool_input_output(serve):
    """bool_input_output.txtar: true -> false, false -> true."""
    server = serve("cogit_bool")
    assert output_of(server, {"flag": True}) is False
    assert output_of(server, {"flag": False}) is True


@pytest.mark.parametrize(
    ("model", "txtar"),
    [("cogit_float", "float_input_output, cog_runtime_float"), ("cogit_int", "cog_runtime_int")],
    ids=["cogit_float", "cogit_int"],
)
def test_numbers_double_and_keep_their_sign(serve, model, txtar):
    server = serve(model)
    for num in (10, -10):
        out = output_of(server, {"num": num})
        assert out == num * 2, (txtar, out)
        if model == "cogit_int":
            assert isinstance(out, int), out
        else:
            assert isinstance(out, float), out


def test_dict_input_and_its_schema(serve):
    """dict_input.txtar: a bare dict input, empty or not; its schema is an untyped object, required."""
    server = serve("cogit_dict_input")
    assert output_of(server, {"data": {"greeting": "hello", "count": 3}}) == "count=3, greeting=hello"
    assert output_of(server, {"data": {}}) == ""
    status, schema = server.get_json("/openapi.json")
    assert status == 200, schema
    inp = schema["components"]["schemas"]["Input"]
    assert inp["properties"]["data"] == {"title": "Data", "type": "object", "x-order": 0}, inp
    assert inp["required"] == ["data"], inp


def test_dict_output(serve):
    """dict_output.txtar: a bare dict output is returned as the object."""
    server = serve("cogit_dict_output")
    assert output_of(server, {"name": "alice"}) == {"greeting": "hello alice", "length": 5}


def test_complex_output(serve):
    """complex_output.txtar: a cog.BaseModel output with Optional fields, None included."""
    server = serve("cogit_complex_output")
    out = output_of(server, {"msg": "test error"})
    assert out["success"] is False and out["error"] == "test error", out
    assert out.get("segmented_image") is None, out


def test_list_of_typed_dict_input(serve):
    """complex_types_list.txtar (and complex_types): structured messages in, joined contents out."""
    server = serve("cogit_typeddict_list")
    messages = [{"content": "Hi There", "role": "user"}, {"content": "I am a test", "role": "user"}]
    assert output_of(server, {"messages": messages}) == "Content: Hi There-I am a test"


# --------------------------------------------------------------------------------------------------
# Files


def test_file_input(serve):
    """file_input.txtar: `-i file=@input.txt` reaches run() as a Path to the content."""
    server = serve("cogit_file_input")
    assert output_of(server, {"file": data_url(b"hello from file\n", "text/plain")}) == "hello from file\n"


def test_file_list_input(serve):
    """file_list_input.txtar: two files into a list[File] input, each readable."""
    server = serve("cogit_file_list")
    files = [data_url(b"content one\n", "text/plain"), data_url(b"content two\n", "text/plain")]
    assert output_of(server, {"files": files}) == "content one\n\n\ncontent two\n"


def test_path_output_with_future_annotations(serve):
    """future_annotations.txtar: `from __future__ import annotations` and a Path output: the file comes
    back (a data URL without --upload-url)."""
    server = serve("cogit_future_annotations")
    media_type, content = decode_data_url(output_of(server, {}))
    assert media_type == "image/png", media_type
    assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) == 24


def test_relative_path_output_from_the_model_directory(serve):
    """glb_project.txtar: setup() and predict() see the model directory as the working directory; a
    relative Path("mesh.glb") output is that file."""
    server = serve("cogit_glb")
    _, content = decode_data_url(output_of(server, {}))
    assert content == b"glTF"


def test_accept_is_in_the_schema_and_the_input_keeps_its_extension(serve):
    """accept_mime_type.txtar: x-cog-accept on each Path input that sets accept=, none elsewhere, Path
    inputs are uri strings, and the input file's name ends in its type's extension (`hello-png`)."""
    server = serve("cogit_accept")
    status, schema = server.get_json("/openapi.json")
    assert status == 200, schema
    props = schema["components"]["schemas"]["Input"]["properties"]
    assert props["image"]["x-cog-accept"] == "image/*", props
    assert props["audio"]["x-cog-accept"] == "audio/wav,audio/mp3", props
    assert props["weights"]["x-cog-accept"] == ".safetensors,.bin", props
    assert "x-cog-accept" not in props["prompt"], props
    assert props["image"]["type"] == "string" and props["image"]["format"] == "uri", props
    image = data_url(b"fake image content\n", "image/png")
    assert output_of(server, {"prompt": "hello", "image": image}) == "hello-png"


def test_schema_of_a_str_and_a_path_input(serve):
    """build_openapi_schema.txtar (the label `cog build` writes is the document the runtime serves):
    Input titled Input, both required in order, the Path a uri string; the prediction returns the file."""
    server = serve("cogit_schema_basic")
    status, schema = server.get_json("/openapi.json")
    assert status == 200, schema
    inp = schema["components"]["schemas"]["Input"]
    assert inp["title"] == "Input" and inp["required"] == ["text", "path"], inp
    assert inp["properties"]["text"]["type"] == "string", inp
    assert inp["properties"]["path"] == {"type": "string", "format": "uri", "title": "Path", "x-order": 1}, inp
    out = output_of(server, {"text": "bar", "path": data_url(b"baz", "text/plain")})
    media_type, content = decode_data_url(out)
    assert content == b"foobarbaz" and media_type == "text/plain", (media_type, content)


def test_schema_of_constraints_choices_secret_and_a_model_output(serve):
    """build_openapi_schema_complex.txtar: ge/le as minimum/maximum, choices as an enum, Secret with
    x-cog-secret, defaults, a structured Output; and the model runs with a secret."""
    server = serve("cogit_schema_complex")
    status, schema = server.get_json("/openapi.json")
    assert status == 200, schema
    schemas = schema["components"]["schemas"]
    props = schemas["Input"]["properties"]
    assert props["temperature"]["minimum"] == 0 and props["temperature"]["maximum"] == 2, props
    assert props["temperature"]["default"] == 0.7, props
    assert props["prompt"]["default"] == "hello", props
    assert props["api_key"]["x-cog-secret"] is True and props["api_key"]["type"] == "string", props
    style = props["style"]
    enum = style.get("enum") or schemas[style["allOf"][0]["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert enum == ["fast", "balanced", "quality"], style
    assert schemas["Input"]["required"] == ["api_key"], schemas["Input"]
    assert schemas["Output"]["properties"].keys() == {"text", "score"}, schemas["Output"]
    out = output_of(server, {"api_key": "s3cret", "temperature": 1.5, "style": "fast"})
    assert out == {"text": "generated from hello (fast, key 6)", "score": 1.5}, out
