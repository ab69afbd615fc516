"""examples/files over HTTP: URL and data-URL inputs downloaded by the worker, file outputs as data
URLs (top level, in lists, nested in objects), and an undownloadable URL failing the prediction."""

import base64
import http.server
import os
import threading

import pytest

from helpers import assert_succeeded


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/missing"):
            self.send_error(404, "File not found")
            return
        body = f"content of {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def files_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def data_url(mime, text):
    return f"data:{mime};base64,{base64.b64encode(text.encode()).decode()}"


def decode(url):
    header, _, data = url.partition(",")
    return header, base64.b64decode(data).decode()


def test_url_input_and_file_output(serve, files_server):
    server = serve("files")
    status, body = server.predict({"file": f"{files_server}/in.txt"})
    assert_succeeded(status, body)
    assert decode(body["output"]) == ("data:text/plain;base64", "CONTENT OF /IN.TXT")
    assert "got tmp" in body["logs"] and "in.txt" in body["logs"]


def test_data_url_input_and_list_output_is_an_array(serve, files_server):
    server = serve("files")
    status, body = server.predict(
        {"file": data_url("text/plain", "abc"), "extra": [f"{files_server}/b.txt"], "shape": "list"}
    )
    assert_succeeded(status, body)
    assert [decode(u)[1] for u in body["output"]] == ["ABC", "content of /b.txt"]


def test_file_nested_in_an_object_is_a_data_url(serve):
    server = serve("files")
    status, body = server.predict({"file": data_url("text/plain", "nested"), "shape": "nested"})
    assert_succeeded(status, body)
    assert body["output"]["name"] == "upper" and body["output"]["size"] == 6
    assert decode(body["output"]["copy"]) == ("data:text/plain;base64", "NESTED")


def test_downloaded_inputs_are_deleted_when_the_prediction_ends(serve, files_server):
    server = serve("files")
    status, body = server.predict({"file": f"{files_server}/a.txt", "extra": [f"{files_server}/b.txt"], "shape": "where"})
    assert_succeeded(status, body)
    paths = [body["output"]["input"], *body["output"]["extra"]]
    assert all(p.startswith("/") for p in paths), paths
    assert not any(os.path.exists(p) for p in paths), paths


def test_undownloadable_url_fails_with_the_url_and_status(serve, files_server):
    server = serve("files")
    url = f"{files_server}/missing.txt"
    status, body = server.predict({"file": url})
    assert status == 200, body
    assert body["status"] == "failed"
    assert body["error"] == f"Input validation error: 404 Client Error: File not found for url: {url}"
    status, body = server.predict({"file": data_url("text/plain", "still alive")})
    assert_succeeded(status, body)


def test_file_input_is_required_and_must_be_a_string(serve):
    server = serve("files")
    status, body = server.predict({})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "input", "file"], body
    status, body = server.predict({"file": 5})
    assert status == 422 and body["detail"][0]["msg"] == '5 is not of type "string"', body
