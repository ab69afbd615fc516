"""Cog's integration tests of processes started in setup() (replicate/cog integration-tests/tests):
setup_subprocess_simple, setup_subprocess_double_fork, setup_subprocess_double_fork_http and
setup_subprocess_multiprocessing, against our own models in tests/models/cogit_*.

Each model starts a background process in setup() that keeps writing to the stdout it inherited; each
prediction checks that process is still alive (it raises SystemExit otherwise) and talks to it. If
the worker's output redirection left the process a dead descriptor, it would die on its first write.
The models write files in their working directory, so each test serves a copy in tmp_path."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from helpers import MODELS, assert_succeeded, free_port, live_descendants, wait_for
from receiver import Receiver


def copy_model(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / "models" / name
    shutil.copytree(MODELS / name, dest)
    return dest


def predict_three(server) -> list[dict]:
    bodies = []
    for n in (1, 2, 3):
        status, body = server.predict({"s": f"friendo{n}"})
        assert_succeeded(status, body)
        assert body["output"] == f"hello friendo{n}", body
        bodies.append(body)
    return bodies


def background(server, marker: str) -> list:
    return [p for p in live_descendants(server.pid) if marker in p.cmdline]


# setup_subprocess_simple: a bash child that writes 100 lines on every SIGUSR1.
def test_subprocess_started_in_setup_survives_predictions(serve, tmp_path):
    server = serve(copy_model("cogit_subprocess_simple", tmp_path))
    # The shell writes its 100 lines on its own time: setup may return (and setup.logs close) before
    # it is done, so what must hold is that every line reaches the server's log, not when.
    wait_for(
        lambda: "SETTING UP (100/100)" in server.stderr_text(),
        timeout=30,
        what="the background shell's setup lines in the server's log",
    )
    predict_three(server)
    assert background(server, "child.sh"), "the background shell died"


# setup_subprocess_double_fork: bash starts python, which forks; the forked child answers through
# files in the working directory.
def test_double_forked_process_answers_each_prediction(serve, tmp_path):
    model = copy_model("cogit_double_fork", tmp_path)
    server = serve(model)
    bodies = predict_three(server)
    assert all("relaying message from background job" in b["logs"] for b in bodies), bodies
    assert len(background(server, "forker.py")) == 2, "the forked pair is not alive"
    assert not (model / ".inbox").exists() and not (model / ".outbox").exists()


# setup_subprocess_double_fork_http: the forked child serves HTTP; each prediction pings it.
def test_double_forked_http_server_answers_each_prediction(serve, tmp_path):
    port = free_port()
    server = serve(copy_model("cogit_double_fork_http", tmp_path), env={"PONG_PORT": str(port)})
    assert "background HTTP server is ready" in server.health()["setup"]["logs"]
    bodies = predict_three(server)
    assert all("got 500 bytes from background job" in b["logs"] for b in bodies), bodies


# setup_subprocess_multiprocessing: a multiprocessing.Process answers a ping through a Pipe; the
# prediction returns a file named cog-test-integration-out.<ns>.tmp. Without an upload URL it is a
# data: URL (its name is in the logs); with one, the name is in the uploaded URL.
def test_multiprocessing_child_started_in_setup(serve, tmp_path):
    server = serve(copy_model("cogit_multiprocessing", tmp_path))
    for n in (1, 2):
        status, body = server.predict({"s": f"friendo{n}"})
        assert_succeeded(status, body)
        assert body["output"] == "data:application/octet-stream;base64," + (
            base64.b64encode(f"hello friendo{n}".encode()).decode()
        ), body
        assert "received pong from background job" in body["logs"], body
        assert "wrote output file cog-test-integration-out." in body["logs"], body


def test_multiprocessing_output_uploaded_under_its_name(serve, tmp_path):
    store = Receiver().start()
    try:
        server = serve(copy_model("cogit_multiprocessing", tmp_path), extra_args=("--upload-url", store.url + "/up/"))
        status, body = server.predict({"s": "friendo1"})
        assert_succeeded(status, body)
        (put,) = store.got("PUT")
        assert put.path.startswith("/up/cog-test-integration-out.") and put.path.endswith(".tmp"), put.path
        assert put.body == b"hello friendo1"
        assert body["output"] == f"{store.url}/stored{put.path}", body
    finally:
        store.stop()
