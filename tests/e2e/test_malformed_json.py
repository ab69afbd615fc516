"""A body that is not JSON is a 400 with a JSON error (not a framework text/plain page)."""

import pytest


@pytest.mark.parametrize("payload", [b'{"input": ', b"not json at all", b'{"input": {"text": "x"},}'])
def test_malformed_body_is_400_json(serve, payload):
    server = serve("hello")
    r = server.request("POST", "/predictions", body=payload, headers={"Content-Type": "application/json"})
    assert r.status == 400, (r.status, r.body)
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    # The server is unaffected.
    status, ok = server.predict({"text": "after"})
    assert status == 200 and ok["output"] == "hello after", ok
