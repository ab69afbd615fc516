"""The issue-15 targets, with the abuses of items 1-3 and 8 at once on one server: idle connections
and stalled 40 MiB bodies held open throughout, a prediction printing 1 MiB 100 times to 20 SSE
subscribers that never read, 100 webhooks with a 1 MiB input to a receiver that never answers, and
file outputs naming a FIFO and /dev/zero. Meanwhile `/health-check` is polled every 50 ms. Targets
(docs/limits.md, "Measured"): the server's RSS stays under 256 MiB, `/health-check` answers within
50 ms, and the worker is never restarted."""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time

import pytest
from faultlib import RssSampler
from test_bound_http import _stalled_body, connect
from test_bound_sse import create, stuck_subscriber, wait_done
from test_bound_webhooks import SilentReceiver

MiB = 1024 * 1024
RSS_LIMIT_KIB = 256 * 1024


class HealthPoller(threading.Thread):
    """GET /health-check every 50 ms: each answer's latency, status, generation and restarts."""

    def __init__(self, server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[float, int, str, int, int]] = []
        self.phase = "start"
        self.by_phase: dict[str, list[float]] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            sent = time.monotonic()
            r = self.server.request("GET", "/health-check", timeout=10)
            latency = time.monotonic() - sent
            self.by_phase.setdefault(self.phase, []).append(latency)
            h = json.loads(r.body) if r.status == 200 else {}
            worker = h.get("worker") or {}
            self.samples.append(
                (latency, r.status, h.get("status", ""), worker.get("generation", 0), worker.get("restarts", -1))
            )
            self._halt.wait(0.05)

    def stop(self) -> list[tuple[float, int, str, int, int]]:
        self._halt.set()
        self.join(timeout=15)
        return self.samples


@pytest.mark.alone
def test_every_abuse_at_once_stays_in_the_targets(start):
    f = start("abuse", env={"COGVISOR_HTTP_BODY_READ_TIMEOUT": "30s"})
    rss = RssSampler(f.server.pid)
    rss.start()
    health = HealthPoller(f.server)
    health.start()
    receiver = SilentReceiver()
    receiver.start()
    idle: list[socket.socket] = []
    held: list[socket.socket] = []
    bodies: list = [None] * 8
    body_threads = [
        threading.Thread(target=_stalled_body, args=(f.server.port, 40 << 20, 39 << 20, bodies, i), daemon=True)
        for i in range(8)
    ]
    try:
        # Item 3: idle connections and stalled bodies, held while everything else runs.
        idle = [connect(f.server.port) for _ in range(60)]
        health.phase = rss.phase = "bodies"
        for t in body_threads:
            t.start()
        # The bodies arrive (and are held, stalled) before the stream starts: each phase's latency
        # is reported on its own.
        time.sleep(4)
        health.phase = rss.phase = "sse"
        # Item 1: a printing stream with 20 subscribers that never read.
        create(f, "sse", text="x" * MiB, prints=100, wait=2.0)
        held = [stuck_subscriber(f.server.port, "sse") for _ in range(20)]
        body = wait_done(f, "sse")
        assert body["status"] == "succeeded", {k: v for k, v in body.items() if k != "logs"}
        health.phase = rss.phase = "webhooks"
        # Item 2: webhooks with a 1 MiB input to a receiver that never answers.
        hook = f"http://127.0.0.1:{receiver.port}/hook"
        for i in range(100):
            r = f.server.request(
                "PUT",
                f"/predictions/w{i}",
                body=json.dumps({"input": {"text": "y" * MiB, "prints": 0}, "webhook": hook}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert r.status == 200 and json.loads(r.body)["status"] == "succeeded", r.body[:300]
        health.phase = rss.phase = "files"
        # Item 8: file outputs the server must refuse without reading.
        for mode, why in [("fifo", "is not a regular file: it is a FIFO"), ("dev_zero", "is outside")]:
            status, out = f.predict(mode=mode, timeout=30)
            assert status == 200 and out["status"] == "failed" and why in out["error"], out
    finally:
        for t in body_threads:
            t.join(timeout=60)
        for s in idle + held:
            s.close()
        samples = health.stop()
        peak = rss.stop()
        receiver.answer()

    latencies = sorted(s[0] for s in samples)
    p99 = latencies[int(len(latencies) * 0.99)]
    print(
        f"server RSS peak {peak // 1024} MiB; /health-check: {len(samples)} answers, "
        f"median {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {latencies[-1] * 1000:.1f} ms"
    )
    for phase, values in health.by_phase.items():
        print(
            f"  {phase}: {len(values)} answers, max {max(values) * 1000:.1f} ms, "
            f"RSS peak {rss.by_phase.get(phase, 0) // 1024} MiB"
        )
    assert peak < RSS_LIMIT_KIB, f"server RSS reached {peak // 1024} MiB"
    assert all(s[1] == 200 for s in samples), [s for s in samples if s[1] != 200][:3]
    assert {(s[3], s[4]) for s in samples} == {(1, 0)}, "the worker was restarted"
    assert "RECYCLING" not in {s[2] for s in samples}
    assert len(samples) > 100, len(samples)
    # The target is 50 ms at all times. Measured on a quiet machine (docs/limits.md): at most 37 ms in
    # a debug build, 6 ms in a release build, through every phase. The p99 is held to the target (it
    # was 73-343 ms before SSE events were shared across subscribers); the single worst answer gets
    # room for the shared machine's scheduler, not for the server's own work.
    assert p99 < 0.05, f"p99 {p99 * 1000:.1f} ms"
    for phase, values in health.by_phase.items():
        worst = max(values)
        assert worst < 1.0, f"{phase}: max {worst * 1000:.1f} ms"
    f.stop_cleanly(timeout=90)
    receiver.close()
