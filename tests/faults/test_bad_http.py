"""Bad HTTP input: bodies over 100 MiB (with a length and chunked), malformed and hostile JSON, unknown
prediction ids and path-like ids. Each gets a JSON error with the right status, nothing is written
outside the runtime directory, and no slot is lost (coglet loses its slot for good on a bad id)."""

from __future__ import annotations

import http.client
import json

import pytest

from faultlib import assert_valid_transitions, wait_no_temp_leftovers

MiB = 1024 * 1024


def send(server, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
    r = server.request(method, path, body=body, headers={"Content-Type": content_type})
    return r.status, r.json()


def post_refused_early(port: int, body, encode_chunked: bool = False) -> tuple[int, dict]:
    """POST /predictions with a body the server may refuse before the client has sent all of it: it
    answers and closes, and the client's send then breaks; the answer is read either way."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        try:
            conn.request("POST", "/predictions", body=body, headers={"Content-Type": "application/json"},
                         encode_chunked=encode_chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def assert_still_serves(f, before: set[str]) -> None:
    pid = f.worker_pid()
    for _ in range(3):
        out = f.assert_serves()
        assert out["pid"] == pid, out
    h = f.server.health()
    assert h["status"] == "READY" and h["slots"]["busy"] == 0 and h["slots"]["poisoned"] == [], h
    assert set(p.name for p in f.tmpdir.parent.iterdir()) == before, "something was created next to TMPDIR"
    wait_no_temp_leftovers(f.tmpdir)


def test_bodies_over_100_mib_are_413(start):
    f = start("faulty")
    before = set(p.name for p in f.tmpdir.parent.iterdir())
    recorder = f.record()
    body = b'{"input": {"mode": "' + b"x" * (101 * MiB) + b'"}}'
    status, answer = post_refused_early(f.server.port, body)
    assert status == 413 and "100 MiB" in answer["error"], (status, answer)

    # The same without a Content-Length: chunks until the limit is crossed.
    def chunks():
        yield b'{"input": {"mode": "'
        for _ in range(105):
            yield b"x" * MiB
        yield b'"}}'

    status, answer = post_refused_early(f.server.port, chunks(), encode_chunked=True)
    assert status == 413 and "100 MiB" in answer["error"], (status, answer)
    assert_still_serves(f, before)
    assert_valid_transitions(recorder.stop())
    f.stop_cleanly()


@pytest.mark.parametrize(
    "payload",
    [
        b'{"input": {"mode": "ok"',
        b'{"input": {"mode": "ok"}}trailing',
        b"\x00\x01\x02",
        b'{"input": {"mode": "\xff\xfe"}}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"input": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}",
        b"",
    ],
    ids=["truncated", "trailing", "binary", "bad-utf8", "deep-array", "deep-object", "empty"],
)
def test_malformed_json_is_400_and_harmless(start, payload):
    f = start("faulty")
    before = set(p.name for p in f.tmpdir.parent.iterdir())
    status, answer = send(f.server, "POST", "/predictions", payload)
    assert status == 400, (status, answer)
    assert "not valid JSON" in answer["error"], answer
    assert_still_serves(f, before)


def test_unknown_prediction_ids_are_404(start):
    f = start("faulty")
    before = set(p.name for p in f.tmpdir.parent.iterdir())
    for path in ("/predictions/nope", "/predictions/nope/cancel"):
        method = "GET" if path.endswith("nope") else "POST"
        r = f.server.request(method, path)
        assert r.status == 404, (path, r.status, r.body)
        r.json()  # a JSON body
    # A finished prediction cannot be cancelled either.
    status, done = f.server.predict({"mode": "ok"}, id="finished-1")
    assert done["status"] == "succeeded", done
    assert f.server.request("POST", "/predictions/finished-1/cancel").status == 404
    assert_still_serves(f, before)


PATH_LIKE = [
    "..%2f..%2fetc",
    "..%2F..%2F..%2Ftmp%2Fescaped",
    "..",
    "%2e%2e",
    "a%2f..%2f..%2fb",
    "ab%00cd",
    "a" * 300,
    "%2fabsolute",
]


def test_path_like_ids_are_refused_and_cost_nothing(start):
    f = start("faulty")
    before = set(p.name for p in f.tmpdir.parent.iterdir())
    for raw in PATH_LIKE:
        r = f.server.request(
            "PUT",
            f"/predictions/{raw}",
            body=json.dumps({"input": {"mode": "ok"}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status == 422, (raw, r.status, r.body)
        assert r.json()["detail"][0]["loc"] == ["body", "id"], (raw, r.body)
    for bad in ("../../../tmp/escaped-body", "/abs", "a/b", "a\x00b", "b" * 300):
        status, answer = f.server.predict({"mode": "ok"}, id=bad)
        assert status == 422, (bad, status, answer)
        assert answer["detail"][0]["loc"] == ["body", "id"], answer
    # No slot was lost: back-to-back predictions all run at once.
    assert_still_serves(f, before)
    f.stop_cleanly()
