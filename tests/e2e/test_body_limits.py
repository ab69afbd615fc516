"""Request body errors answer JSON: 413 over 100 MiB, 415 for a non-JSON content type."""


def test_oversized_body_is_413_with_a_json_error(serve):
    server = serve("hello")
    body = b'{"input": {"text": "' + b"x" * (101 * 1024 * 1024) + b'"}}'
    r = server.request("POST", "/predictions", body=body, headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert "100 MiB" in r.json()["error"]
    # The server is fine afterwards.
    status, out = server.predict({"text": "ok"})
    assert status == 200 and out["status"] == "succeeded"


def test_non_json_content_type_is_415(serve):
    server = serve("hello")
    r = server.request("POST", "/predictions", body=b"text=1", headers={"Content-Type": "text/plain"})
    assert r.status == 415
    assert "application/json" in r.json()["error"]
