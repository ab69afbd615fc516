"""Output written below Python (a shell child, a raw write to fd 1) lands in the prediction's logs."""

from helpers import assert_succeeded


def test_fd_level_output_is_captured(serve):
    server = serve("fd_writer")
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["output"] == "ok"
    for text in ("from-shell", "raw fd1", "py print"):
        assert text in body["logs"], f"{text!r} missing from logs: {body['logs']!r}"
