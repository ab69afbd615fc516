"""A frozen worker (SIGSTOP): without any user healthcheck, the runtime heartbeat makes it UNHEALTHY
after `health.heartbeat_timeout`, recycles it after a second timeout of silence, and the stopped tree
is killed and reaped. A worker that is only busy in a long predict() keeps answering."""

from __future__ import annotations

import os
import signal
import time

from faultlib import in_background, wait_busy, wait_dead
from helpers import wait_for

HEARTBEAT = {
    "COGVISOR_HEALTH_HEARTBEAT_INTERVAL": "200ms",
    "COGVISOR_HEALTH_HEARTBEAT_TIMEOUT": "2s",
    "COGVISOR_STOP_GRACE": "1s",
}


def test_a_stopped_worker_is_unhealthy_then_recycled(start):
    f = start("faulty", env=HEARTBEAT)
    old = f.worker_pid()
    pending = in_background(f.predict, mode="sleep", seconds=60)
    wait_busy(f.server)

    os.kill(old, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        h = wait_for(
            lambda: (lambda h: h if h["status"] == "UNHEALTHY" else None)(f.server.health()),
            timeout=30,
            what="UNHEALTHY after the heartbeat timeout",
        )
        unhealthy_in = time.monotonic() - stopped_at
        assert "runtime heartbeat" in str(h), h
        assert 1.5 < unhealthy_in < 15, f"UNHEALTHY {unhealthy_in:.1f} s after SIGSTOP"
        assert f.server.get_json("/readyz")[0] == 503

        # The in-flight prediction fails naming the heartbeat once the worker is recycled.
        status, body = pending.result(timeout=30)
        assert status == 200 and body["status"] == "failed", body
        assert "heartbeat" in body["error"], body

        dead_at = wait_dead(old)
        h = f.wait_ready_generation(2)
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "heartbeat" and last["succeeded"] is True, last
    assert dead_at - stopped_at < 30
    assert f.assert_serves()["generation"] == 2
    metrics = f.server.request("GET", "/metrics").body.decode()
    assert "cogvisor_heartbeats_missed_total 2" in metrics, metrics
    f.stop_cleanly()


def test_a_busy_worker_answers_the_heartbeat(start):
    f = start("faulty", env=HEARTBEAT)
    status, body = f.predict(mode="sleep", seconds=4)
    assert status == 200 and body["status"] == "succeeded", body
    h = f.server.health()
    assert h["status"] == "READY" and h["worker"]["generation"] == 1, h
    metrics = f.server.request("GET", "/metrics").body.decode()
    assert "cogvisor_heartbeats_missed_total 0" in metrics, metrics
    f.stop_cleanly()
