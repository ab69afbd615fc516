"""Every error answers JSON, as docs/http-api.md says: unknown routes (404), a known route with the wrong
method (405, with its `Allow` header), and the framework's own refusals (a path it cannot decode)."""

import pytest


def assert_json_error(r, status):
    assert r.status == status, (r.status, r.headers, r.body)
    assert r.headers.get("content-type") == "application/json", r.headers
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"], body
    return body["error"]


@pytest.mark.parametrize(
    "method,path",
    [("GET", "/nope"), ("POST", "/predictions/"), ("GET", "/docs"), ("POST", "/predictions/a/b/cancel"), ("DELETE", "/x/y")],
)
def test_an_unknown_route_is_404_json_naming_it(serve, method, path):
    server = serve("hello")
    error = assert_json_error(server.request(method, path), 404)
    assert error == f"no route {method} {path}"


@pytest.mark.parametrize(
    "method,path,allow",
    [
        ("DELETE", "/predictions", "POST"),
        ("GET", "/predictions", "POST"),
        ("GET", "/predictions/p1/cancel", "POST"),
        ("PATCH", "/predictions/p1", "GET,HEAD,PUT"),
        ("POST", "/health-check", "GET,HEAD"),
        ("GET", "/shutdown", "POST"),
    ],
)
def test_a_wrong_method_is_405_json_with_the_allow_header(serve, method, path, allow):
    server = serve("hello")
    r = server.request(method, path)
    error = assert_json_error(r, 405)
    assert sorted(r.headers["allow"].split(",")) == sorted(allow.split(","))
    allowed = ", ".join(m.strip() for m in r.headers["allow"].split(","))
    assert error == f"method {method} not allowed on {path}; allowed: {allowed}"
    # The server is unaffected (and GET /shutdown shut nothing down).
    status, body = server.predict({"text": "after"})
    assert status == 200 and body["output"] == "hello after", body


def test_a_path_that_is_not_utf8_is_400_json(serve):
    server = serve("hello")
    error = assert_json_error(server.request("GET", "/predictions/%FF"), 400)
    assert "%FF" in error or "UTF-8" in error or "utf-8" in error, error


def test_an_oversized_recycle_body_is_413_json(serve):
    server = serve("hello", env={"COGVISOR_ADMIN_TOKEN": "t0ken"})
    # A recycle body carries a reason only: 64 KiB at most (crates/server/src/health_routes.rs).
    body = b'{"reason": "' + b"x" * (65 * 1024) + b'"}'
    r = server.request("POST", "/recycle", body=body, headers={"Authorization": "Bearer t0ken"})
    assert "64 KiB" in assert_json_error(r, 413)
