"""A model names files the supervisor must not read as its outputs (written past the SDK, as frames on
its own slot socket): a FIFO in its output directory, /dev/zero, a link from its output directory to a
file elsewhere, a file outside the runtime directory, and a regular output over
`outputs.max_file_size`. Each prediction fails at once naming the path; `/health-check` stays fast
throughout; the worker is kept (same pid, no restart, no setup again). A metric whose name nests
100,000 levels is dropped and the server lives on."""

from __future__ import annotations

import time

import pytest

from faultlib import in_background, rss_kib


def _health_latency(server) -> float:
    sent = time.monotonic()
    status, _ = server.get_json("/health-check", timeout=10)
    assert status == 200
    return time.monotonic() - sent


@pytest.mark.parametrize(
    ("mode", "named", "why"),
    [
        ("fifo", "out.fifo", "is not a regular file: it is a FIFO"),
        ("dev_zero", "/dev/zero", "is outside the prediction's output directory"),
        ("symlink_outside", "leak.txt", "is not a regular file: it is a symbolic link"),
        ("file_outside", "secret.txt", "is outside the prediction's output directory"),
    ],
)
def test_a_file_output_that_is_not_a_regular_file_inside_the_output_dir_fails_the_prediction(
    start, tmp_path, mode, named, why
):
    f = start("bad_files")
    pid = f.worker_pid()
    rss_before = rss_kib(f.server.pid)

    pending = in_background(f.predict, mode=mode, dir=str(tmp_path), timeout=30)
    # While it is being refused, and after, the health check answers at once.
    latencies = [_health_latency(f.server) for _ in range(5)]
    status, body = pending.result(timeout=40)

    assert status == 200 and body["status"] == "failed", body
    assert named in body["error"] and why in body["error"], body["error"]
    assert "not for clients" not in str(body), body
    assert max(latencies) < 0.5, latencies
    assert max(_health_latency(f.server) for _ in range(3)) < 0.5
    h = f.server.health()
    assert h["status"] == "READY" and h["worker"]["pid"] == pid and h["worker"]["restarts"] == 0, h
    assert h["slots"]["poisoned"] == [], h
    status, body = f.predict(mode="ok")
    assert status == 200 and body["output"] == "ok", body
    # Nothing was read without end.
    assert rss_kib(f.server.pid) < rss_before + 64 * 1024
    f.stop_cleanly()


def test_an_output_file_over_the_size_cap_fails_naming_the_limit(start, tmp_path):
    f = start("bad_files", env={"COGVISOR_OUTPUTS_MAX_FILE_SIZE": "1MiB"})
    pid = f.worker_pid()
    status, body = f.predict(mode="big_file", dir=str(tmp_path), megabytes=1)
    assert status == 200 and body["status"] == "succeeded", body
    assert body["output"].startswith("data:application/octet-stream;base64,"), body["output"][:80]
    status, body = f.predict(mode="big_file", dir=str(tmp_path), megabytes=2)
    assert status == 200 and body["status"] == "failed", body
    assert "big.bin" in body["error"] and "over the 1048576-byte limit (outputs.max_file_size)" in body["error"], body
    h = f.server.health()
    assert h["worker"]["pid"] == pid and h["worker"]["restarts"] == 0, h
    f.stop_cleanly()


def test_a_metric_name_nesting_100000_levels_is_dropped_and_the_server_lives(start):
    f = start("bad_files")
    pid = f.worker_pid()
    status, body = f.predict(mode="deep_metric")
    assert status == 200 and body["status"] == "succeeded", body
    assert set(body["metrics"]) == {"predict_time"}, body["metrics"]
    assert f.server.proc.poll() is None
    assert f.server.health()["worker"]["pid"] == pid
    assert "metric from the worker dropped" in f.server.stderr_text()
    f.stop_cleanly()
