"""File outputs with --upload-url against a real local upload server: order, unique names, Location
without its query string, retries, and a failure that fails the prediction."""

from __future__ import annotations

from receiver import Receiver


def upload_server(script=None) -> Receiver:
    return Receiver(script).start()


def test_uploads_keep_output_order_and_use_location_without_query(serve):
    store = upload_server()
    try:
        server = serve("file_outputs", extra_args=("--upload-url", store.url + "/upload/"))
        status, body = server.predict({"count": 4, "same_name": False})
        assert status == 200 and body["status"] == "succeeded", body
        puts = store.got("PUT")
        assert [r.path for r in puts] == [f"/upload/g{i}.txt" for i in range(4)]
        assert [r.body for r in puts] == [f"file {i}".encode() for i in range(4)]
        assert all(r.headers["content-type"] == "text/plain" for r in puts)
        assert body["output"] == [f"{store.url}/stored/upload/g{i}.txt" for i in range(4)]
    finally:
        store.stop()


def test_outputs_with_the_same_name_do_not_overwrite_each_other(serve):
    store = upload_server()
    try:
        server = serve("file_outputs", extra_args=("--upload-url", store.url + "/upload/"))
        status, body = server.predict({"count": 3, "same_name": True, "name": "out.txt"})
        assert status == 200 and body["status"] == "succeeded", body
        puts = store.got("PUT")
        paths = [r.path for r in puts]
        assert len(set(paths)) == 3, paths
        assert all(p.startswith("/upload/") and p.endswith(".txt") and "out" in p for p in paths), paths
        assert paths[0] == "/upload/out.txt"
        assert [r.body for r in puts] == [b"file 0", b"file 1", b"file 2"]
        assert len(set(body["output"])) == 3
    finally:
        store.stop()


def test_an_upload_is_retried_after_a_503(serve):
    state = {"puts": 0}

    def script(req):
        if req.method == "PUT":
            state["puts"] += 1
            if state["puts"] == 1:
                return 503
        return None

    store = upload_server(script)
    try:
        server = serve("file_outputs", extra_args=("--upload-url", store.url + "/upload/"))
        status, body = server.predict({"count": 1, "same_name": False})
        assert status == 200 and body["status"] == "succeeded", body
        puts = store.got("PUT")
        assert [r.path for r in puts] == ["/upload/g0.txt", "/upload/g0.txt"]
        assert body["output"] == [f"{store.url}/stored/upload/g0.txt"]
    finally:
        store.stop()


def test_an_upload_refused_for_good_fails_the_prediction(serve):
    store = upload_server(lambda req: 403 if req.method == "PUT" else None)
    try:
        server = serve("file_outputs", extra_args=("--upload-url", store.url + "/upload/"))
        status, body = server.predict({"count": 2, "same_name": False})
        assert status == 200, body
        assert body["status"] == "failed", body
        assert f"{store.url}/upload/g0.txt" in body["error"]
        assert "403" in body["error"]
        assert len(store.got("PUT")) == 1
        # The server is usable afterwards.
        server.wait_status("READY")
    finally:
        store.stop()


def test_without_upload_url_files_are_data_urls(serve):
    server = serve("file_outputs")
    status, body = server.predict({"count": 1, "same_name": False})
    assert status == 200 and body["status"] == "succeeded", body
    assert body["output"] == ["data:text/plain;base64,ZmlsZSAw"]


def test_a_bad_upload_url_is_refused_at_start(tmp_path):
    from helpers import BIN, MODELS, run_to_exit

    r = run_to_exit(["serve", str(MODELS / "file_outputs"), "--upload-url", "ftp://x/"])
    assert r.returncode != 0
    assert "ftp://x/" in r.stderr.decode()
