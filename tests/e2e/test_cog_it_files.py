"""Cog's integration tests coglet_*path*, coglet_*upload*, coglet_large_* (replicate/cog
integration-tests/tests), black box: Path outputs (single, list, iterator) as data URLs and uploaded to
--upload-url, a list of one is still a list, a 50 MiB upload, and a 7 MiB input and a 9 MiB output
carried by an async prediction's webhook. The models are tests/models/cogit_*."""

from __future__ import annotations

import base64
import json

import pytest

from helpers import assert_succeeded
from receiver import Receiver

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def serve(serve, server_tmpdir):
    """The suite's `serve`, with TMPDIR in the test's own directory: these models write their outputs
    with tempfile.mkdtemp(), as the txtars' do, and nothing may be left in the system temp dir."""
    tmpdir = server_tmpdir

    def start(model, env=None, **kwargs):
        return serve(model, env={"TMPDIR": str(tmpdir), **(env or {})}, **kwargs)

    return start


@pytest.fixture
def store():
    r = Receiver().start()
    yield r
    r.stop()


def upload_args(store) -> tuple[str, ...]:
    return ("--upload-url", store.url + "/upload/")


def predict_ok(server, input: dict | None = None):
    status, body = server.predict(input or {})
    assert_succeeded(status, body)
    return body["output"]


def assert_uploaded(store, output: list[str], names: list[str]) -> None:
    puts = store.got("PUT")
    assert [r.path for r in puts] == [f"/upload/{n}" for n in names], [r.path for r in puts]
    assert output == [f"{store.url}/stored/upload/{n}" for n in names], output


def test_iterator_of_paths_without_upload_url_are_data_urls(serve):
    """coglet_iterator_path_output.txtar (`cog run` then writes output.0.png ... output.2.png from
    them): three files, in order, none failed."""
    server = serve("cogit_iter_paths")
    out = predict_ok(server)
    assert len(out) == 3, out
    for url, color in zip(out, ["red", "blue", "green"]):
        head, payload = url.split(",", 1)
        assert head == "data:image/png;base64", head
        assert base64.b64decode(payload) == PNG + color.encode()


def test_iterator_of_paths_is_uploaded_per_item(serve, store):
    """coglet_iterator_upload_url.txtar: three PUTs, the output is their URLs, no data URL."""
    server = serve("cogit_iter_paths", extra_args=upload_args(store))
    out = predict_ok(server)
    assert_uploaded(store, out, ["red.png", "blue.png", "green.png"])
    assert [r.body for r in store.got("PUT")] == [PNG + c for c in (b"red", b"blue", b"green")]


def test_list_of_paths_is_uploaded(serve, store):
    """coglet_list_path_upload_url.txtar: a returned List[Path] goes through the upload, not base64."""
    server = serve("cogit_list_paths", extra_args=upload_args(store))
    out = predict_ok(server, {"count": 3})
    assert_uploaded(store, out, ["red.png", "blue.png", "green.png"])


def test_list_of_one_path_is_still_a_list(serve, store):
    """coglet_list_path_single_element.txtar: count=1 gives ["url"], never "url"; then count=2 gives two
    (three uploads in all)."""
    server = serve("cogit_list_paths", extra_args=upload_args(store))
    out = predict_ok(server, {"count": 1})
    assert isinstance(out, list) and len(out) == 1 and out[0].startswith(store.url), out
    out = predict_ok(server, {"count": 2})
    assert isinstance(out, list) and len(out) == 2 and all(u.startswith(store.url) for u in out), out
    assert len(store.got("PUT")) == 3


def test_single_path_is_a_scalar_url(serve, store):
    """coglet_single_path_output.txtar: `-> Path` gives "url", not ["url"]; one upload."""
    server = serve("cogit_single_path", extra_args=upload_args(store))
    out = predict_ok(server)
    assert out == f"{store.url}/stored/upload/output.png", out
    assert len(store.got("PUT")) == 1


def test_a_50_mib_file_is_uploaded(serve, store):
    """coglet_large_file_upload_serial.txtar: a 50 MiB binary output, uploaded whole, output a URL."""
    server = serve("cogit_large_file", extra_args=upload_args(store))
    out = predict_ok(server)
    assert out == f"{store.url}/stored/upload/large_output.bin", out[:200]
    puts = store.got("PUT")
    assert len(puts) == 1
    assert len(puts[0].body) == 50 * 1024 * 1024
    assert puts[0].body[:8] == b"\xde\xad\xbe\xef" * 2


def async_with_webhook(server, hook_url: str, body: dict) -> None:
    body = {**body, "webhook": hook_url, "webhook_events_filter": ["completed"]}
    r = server.request(
        "POST",
        "/predictions",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202, r.body[:500]


def test_a_7_mib_input_reaches_the_model_whole(serve, store):
    """coglet_large_input.txtar: a 7 MiB string input (past coglet's 6 MiB inline IPC limit); the
    completed webhook says succeeded with the length."""
    server = serve("cogit_large_input")
    async_with_webhook(server, store.url + "/hook", {"id": "large-input-test", "input": {"padding": "A" * 7340032}})
    hooks = store.wait_terminal(timeout=120)
    assert [h["status"] for h in hooks] == ["succeeded"], [h["status"] for h in hooks]
    assert hooks[0]["output"] == "7340032"


def test_a_9_mib_output_reaches_the_webhook_whole(serve, store):
    """coglet_large_output.txtar: a 9 MiB string output (past coglet's 8 MiB IPC frame limit)."""
    server = serve("cogit_large_output")
    async_with_webhook(server, store.url + "/hook", {"id": "large-output-test"})
    hooks = store.wait_terminal(timeout=120)
    assert [h["status"] for h in hooks] == ["succeeded"], [h["status"] for h in hooks]
    assert hooks[0]["output"] == "x" * (9 * 1024 * 1024)
