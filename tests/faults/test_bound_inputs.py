"""A URL input that trickles (one byte every 0.2 s, so no socket operation ever stalls long enough to
time out) is bounded without touching the worker: a cancel ends the prediction `canceled` at once, and
the download deadline (`COGVISOR_DOWNLOAD_DEADLINE`) fails it; either way the same worker, with the setup
it already ran, serves the next prediction, and the partial download is gone. Before the fix the cancel
could not reach the download: the slot was poisoned after `cancel_grace` and the worker was replaced,
setup and all (a client-triggered outage), and the partial file sat in the system temp dir."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
from typing import Any, Iterator

import pytest

from faultlib import temp_leftovers, wait_no_temp_leftovers
from helpers import wait_for


class Trickle(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        try:
            for _ in range(600):  # at most 2 minutes
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the worker went away
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def trickle_url() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/weights.bin"
    srv.shutdown()
    srv.server_close()


def put_async(server, pid: str, input: dict) -> None:
    r = server.request(
        "PUT",
        f"/predictions/{pid}",
        body=json.dumps({"input": input}).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202, (r.status, r.body)


def ended(server, pid: str):
    def check():
        _, body = server.get_json(f"/predictions/{pid}")
        return body if body.get("status") in ("succeeded", "failed", "canceled") else None

    return check


def downloading(tmpdir) -> bool:
    """A partial download of the trickling URL exists somewhere under the server's TMPDIR."""
    return any(p.is_file() for p in tmpdir.rglob("*weights.bin"))


def test_cancel_of_a_trickling_download_keeps_the_worker(start, tmp_path, trickle_url):
    setups = tmp_path / "setups"
    f = start("bounded", env={"BOUNDED_SETUPS": str(setups), "COGVISOR_CANCEL_GRACE": "2s"})
    before = f.server.health()["worker"]
    put_async(f.server, "trickle", {"file": trickle_url})
    wait_for(lambda: downloading(f.tmpdir), timeout=30, what="the download to start")
    time.sleep(1)  # a few bytes in: the download is blocked in a read

    cancelled_at = time.monotonic()
    r = f.server.request("POST", "/predictions/trickle/cancel")
    assert r.status == 200, r.body
    body = wait_for(ended(f.server, "trickle"), timeout=30, what="the cancelled prediction to end")
    took = time.monotonic() - cancelled_at
    assert body["status"] == "canceled", body
    assert took < 1.5, f"ended {took:.2f} s after the cancel"

    h = f.server.health()
    assert h["worker"]["pid"] == before["pid"] and h["worker"]["generation"] == before["generation"], h
    assert h["worker"]["restarts"] == 0 and h["slots"]["poisoned"] == [], h
    assert h["status"] == "READY", h
    wait_no_temp_leftovers(f.tmpdir)
    out = f.predict(file="data:text/plain,hello")[1]
    assert out["status"] == "succeeded" and out["output"] == {"pid": before["pid"], "size": 5}, out
    assert len(setups.read_text().splitlines()) == 1, "setup ran again"
    f.stop_cleanly()


def test_the_download_deadline_fails_the_prediction_and_keeps_the_worker(start, tmp_path, trickle_url):
    setups = tmp_path / "setups"
    f = start("bounded", env={"BOUNDED_SETUPS": str(setups), "COGVISOR_DOWNLOAD_DEADLINE": "2"})
    before = f.server.health()["worker"]
    t0 = time.monotonic()
    status, body = f.predict(file=trickle_url)
    took = time.monotonic() - t0
    assert status == 200 and body["status"] == "failed", body
    assert body["error"] == (
        f"Input validation error: download of {trickle_url} did not finish within 2 s (COGVISOR_DOWNLOAD_DEADLINE)"
    ), body
    assert took < 6, took
    h = f.server.health()
    assert h["worker"]["pid"] == before["pid"] and h["worker"]["restarts"] == 0 and h["slots"]["poisoned"] == [], h
    assert not temp_leftovers(f.tmpdir), temp_leftovers(f.tmpdir)
    assert f.predict(file="data:text/plain,hi")[1]["output"] == {"pid": before["pid"], "size": 2}
    assert len(setups.read_text().splitlines()) == 1, "setup ran again"
    f.stop_cleanly()


def test_a_download_cut_by_a_worker_sigkill_leaves_nothing(start, trickle_url):
    f = start("bounded")
    old = f.worker_pid()
    put_async(f.server, "cut", {"file": trickle_url})
    wait_for(lambda: downloading(f.tmpdir), timeout=30, what="the download to start")
    os.kill(old, signal.SIGKILL)
    body = wait_for(ended(f.server, "cut"), timeout=30, what="the prediction to fail")
    assert body["status"] == "failed" and "SIGKILL" in body["error"], body
    f.wait_ready_generation(2)
    # the new worker removed what the killed one was downloading
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
