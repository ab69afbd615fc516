"""Prediction ids are checked: at most 128 characters of [A-Za-z0-9._-], and not `.` or `..`."""

import pytest

from helpers import EXAMPLES, spawn_server, wait_listening

BAD_IDS = [
    "a" * 129,
    "has space",
    "slash/id",
    "back\\slash",
    "semi;colon",
    "ünïcode",
    "new\nline",
    ".",
    "..",
]


@pytest.fixture(scope="module")
def hello(tmp_path_factory):
    # One server for every id case (ids are checked before anything runs).
    server = spawn_server(EXAMPLES / "hello", tmp_path_factory.mktemp("logs"))
    try:
        wait_listening(server)
        server.wait_status("READY", timeout=60)
        yield server
    finally:
        server.cleanup()


@pytest.mark.parametrize("bad", BAD_IDS, ids=lambda s: repr(s)[:20])
def test_bad_id_is_422(hello, bad):
    status, body = hello.predict({"text": "x"}, id=bad)
    assert status == 422, body
    detail = body["detail"]
    assert isinstance(detail, list) and detail, body
    assert detail[0]["loc"] == ["body", "id"], body
    assert detail[0]["type"] == "value_error", body
    assert isinstance(detail[0]["msg"], str) and detail[0]["msg"], body


@pytest.mark.parametrize("good", ["a" * 128, "abc.DEF_1-2", "pred_0123456789abcdef", "..a", "a.."])
def test_good_id_is_accepted_and_echoed(hello, good):
    status, body = hello.predict({"text": "x"}, id=good)
    assert status == 200, body
    assert body["status"] == "succeeded", body
    assert body["id"] == good, body


def test_missing_id_is_generated(hello):
    status, body = hello.predict({"text": "x"})
    assert status == 200, body
    assert isinstance(body["id"], str) and body["id"], body
