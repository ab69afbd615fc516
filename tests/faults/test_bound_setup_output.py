"""A setup() that prints 30 MB: `setup.logs` keeps its first and last `logs.max_setup / 2` bytes
(1 MiB each by default) with a line between them naming how many bytes were dropped, so the first
lines and the milestones survive at the head and the traceback of a failed setup (or `Server ready`)
at the tail. Every `/health-check` body stays under the bound and answers fast, and the server's
memory stays bounded (before the bound: the whole output in every body, 106 MB and 0.5 s each for
100 MB of output, and a 446 MB server)."""

from __future__ import annotations

import re
import time

import pytest

from faultlib import RssSampler, wait_no_temp_leftovers
from helpers import http_request

MiB = 1024 * 1024
FLOOD_MEGABYTES = 12
# Each flood line in setup.logs: "[cogvisor::setup] " + 99 characters + "\n".
FLOOD_LINE = len("[cogvisor::setup] ") + 100
FLOOD_BYTES = FLOOD_MEGABYTES * 1_000_000 // 100 * FLOOD_LINE
BOUND = 2 * MiB  # the default logs.max_setup
# A body holds the kept text as a JSON string (each line end escaped as two bytes) plus the rest of
# the body: status, worker, slots, version and the notice.
BODY_LIMIT = BOUND + BOUND // FLOOD_LINE + 16 * 1024
HEALTH_LATENCY_LIMIT = 0.2
# Peak server RSS allowed while the worker prints (measured, debug build: 42-45 MiB with the bound;
# before it, 172-190 MiB for 30 MB of output while /health-check was polled).
RSS_LIMIT_KIB = 96 * 1024
NOTICE = re.compile(
    r"\n\[cogvisor: (\d+) bytes of setup output dropped; setup\.logs keeps the first (\d+) and the last (\d+) bytes\]\n"
)


def health(server) -> tuple[float, int, dict]:
    started = time.monotonic()
    r = http_request(server.port, "GET", "/health-check", timeout=30)
    elapsed = time.monotonic() - started
    assert r.status == 200, r
    return elapsed, len(r.body), r.json()


@pytest.mark.parametrize("fail", [False, True], ids=["succeeds", "fails"])
def test_setup_output_is_bounded_to_head_and_tail(start, fail):
    env = {"FLOOD_MEGABYTES": str(FLOOD_MEGABYTES)}
    if fail:
        env["FLOOD_FAIL"] = "1"
    f = start("setup_flood", env=env, wait=None)
    sampler = RssSampler(f.server.pid)
    sampler.start()
    final = "SETUP_FAILED" if fail else "READY"
    largest = 0
    deadline = time.monotonic() + 180
    # Poll through the flood: every body stays under the bound, whatever has been printed so far.
    while True:
        _, size, h = health(f.server)
        largest = max(largest, size)
        if h["status"] == final:
            break
        assert h["status"] == "STARTING", h["status"]
        assert time.monotonic() < deadline, "setup did not end within 180 s"
        time.sleep(0.05)
    peak = sampler.stop()
    print(f"peak server RSS {peak} KiB; largest /health-check body {largest} bytes")

    logs = h["setup"]["logs"]
    assert largest <= BODY_LIMIT, f"a /health-check body of {largest} bytes"
    assert len(logs.encode()) <= BOUND + 200, len(logs.encode())
    notice = NOTICE.search(logs)
    assert notice, logs[MiB - 300 : MiB + 300]
    dropped, head, tail = (int(n) for n in notice.groups())
    assert (head, tail) == (MiB, MiB), notice.group(0)
    assert FLOOD_BYTES - BOUND < dropped < FLOOD_BYTES, (dropped, FLOOD_BYTES)
    before, after = logs[: notice.start() + 1], logs[notice.end() :]
    # The head: the runtime's first milestones and the model's first line, whole lines up to 1 MiB.
    assert before.startswith("[cogvisor] cogvisor "), before[:300]
    assert "[cogvisor::setup] setup_flood: first line\n" in before[:8192], before[:2000]
    assert MiB - 4096 < len(before.encode()) <= MiB, len(before.encode())
    # The tail: the flood's last lines, the model's last line and how setup ended.
    assert MiB - 4096 < len(after.encode()) <= MiB, len(after.encode())
    assert after.startswith("[cogvisor::setup] " + "x" * 99 + "\n"), after[:300]
    assert "[cogvisor::setup] setup_flood: last line\n" in after, after[-2000:]
    if fail:
        assert h["setup"]["status"] == "failed", h["setup"]["status"]
        assert "Traceback (most recent call last)" in after[-8192:], after[-3000:]
        assert "RuntimeError: setup_flood failed after the flood" in after[-2000:], after[-3000:]
    else:
        assert after.endswith("[cogvisor] Server ready\n"), after[-300:]

    # Answered from the bounded text: fast, every time.
    timings = [health(f.server)[0] for _ in range(10)]
    print(f"/health-check after setup: {min(timings):.4f}..{max(timings):.4f} s")
    assert max(timings) < HEALTH_LATENCY_LIMIT, f"/health-check took {max(timings):.3f} s ({timings})"
    assert peak < RSS_LIMIT_KIB, f"server peak RSS {peak} KiB while setup printed {FLOOD_MEGABYTES} MB"

    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()


def test_the_bound_is_logs_max_setup(start):
    f = start("setup_flood", env={"FLOOD_MEGABYTES": "1", "COGVISOR_LOGS_MAX_SETUP": "64KiB"}, wait="READY", timeout=120)
    logs = f.server.health()["setup"]["logs"]
    notice = NOTICE.search(logs)
    assert notice, logs[:2000]
    dropped, head, tail = (int(n) for n in notice.groups())
    assert (head, tail) == (32 * 1024, 32 * 1024), notice.group(0)
    assert len(logs.encode()) <= 64 * 1024 + 200, len(logs.encode())
    assert "setup_flood: first line" in logs[: notice.start()]
    assert logs.endswith("[cogvisor::setup] setup_flood: last line\n[cogvisor] Server ready\n"), logs[-300:]
    assert dropped > 1_000_000, dropped
    f.stop_cleanly()
