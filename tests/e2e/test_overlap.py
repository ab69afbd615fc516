"""`recycle.overlap` with one worker: a recycle sets the next generation up while the old one serves,
and swaps when it is READY. Every trigger where the old worker can still serve goes through it (the
model's `cog.recycle_worker`, `POST /recycle`, `recycle.max_predictions`, `recycle.max_rss`,
liveness); a continuous client sees no 503, no 409 and no failed prediction across twenty of them,
and nothing of an old generation is left running."""

from __future__ import annotations

import os
import signal
import threading
import time

from helpers import descendants, is_alive, processes, wait_for
from test_max_rss import MB, WorkerRssSampler, metric_samples

OVERLAP = {"COGVISOR_RECYCLE_OVERLAP": "true"}
ADMIN = {"COGVISOR_ADMIN_TOKEN": "t"}


def workers_of(server) -> list[int]:
    """The pids of the server's worker processes (its direct children)."""
    return [p.pid for p in processes() if p.ppid == server.pid]


def client_loop(server, until, input) -> tuple[list[int], list]:
    """Predicts one after another until `until()`; every status, and what was not a success."""
    statuses: list[int] = []
    bad: list = []
    deadline = time.monotonic() + 240
    while not until():
        assert time.monotonic() < deadline, f"not done in 240 s after {len(statuses)} predictions"
        status, body = server.predict(input)
        statuses.append(status)
        if status != 200 or body.get("status") != "succeeded":
            bad.append((status, body))
    return statuses, bad


def test_twenty_model_recycles_overlap_under_a_client_without_a_503(serve):
    # recycler asks for its own recycle every third prediction (cog.recycle_worker).
    server = serve("recycler", env=OVERLAP)
    server.wait_status("READY")
    statuses, bad = client_loop(
        server, lambda: server.health()["worker"]["generation"] >= 21, {"mode": "count"}
    )
    assert not bad, bad[:3]
    assert len(statuses) >= 40, len(statuses)
    h = server.wait_status("READY")
    assert h["worker"]["restarts"] == h["worker"]["generation"] - 1, h["worker"]
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "model" and last["succeeded"] is True, last
    s = metric_samples(server)
    assert s[("cogvisor_worker_recycles_total", (("outcome", "succeeded"), ("trigger", "model")))] >= 20, s
    print(f"overlap model: {h['worker']['generation'] - 1} recycles, {len(statuses)} predictions, all 200; "
          f"the last took {last['duration_seconds']:.2f} s request to swap")
    # Every old generation was stopped once it had finished: one worker is left.
    wait_for(lambda: len(workers_of(server)) == 1, timeout=60, what="one worker process left")


def test_admin_and_max_predictions_recycles_overlap_under_a_client(serve):
    server = serve("recycler", env={**OVERLAP, **ADMIN, "COGVISOR_RECYCLE_MAX_PREDICTIONS": "5"})
    server.wait_status("READY")
    stop = threading.Event()
    admin: list[int] = []

    def rotate():
        while not stop.wait(0.7):
            admin.append(server.request("POST", "/recycle", headers={"Authorization": "Bearer t"}).status)

    rotator = threading.Thread(target=rotate)
    rotator.start()
    try:
        statuses, bad = client_loop(
            server, lambda: server.health()["worker"]["generation"] >= 21, {"mode": "sleep", "seconds": 0.05}
        )
    finally:
        stop.set()
        rotator.join(timeout=30)
    assert not bad, bad[:3]
    assert set(admin) == {202}, admin
    s = metric_samples(server)
    by = {t: s.get(("cogvisor_worker_recycles_total", (("outcome", "succeeded"), ("trigger", t))), 0) for t in ("admin", "max_predictions")}
    assert by["admin"] >= 1 and by["max_predictions"] >= 1, by
    print(f"overlap admin+max_predictions: {by}, {len(statuses)} predictions, all 200")
    wait_for(lambda: len(workers_of(server)) == 1, timeout=60, what="one worker process left")


def test_a_prediction_on_the_old_worker_finishes_while_the_new_one_serves(serve):
    server = serve("recycler", env={**OVERLAP, **ADMIN, "RECYCLE_SETUP_SECONDS": "2"})
    server.wait_status("READY")
    old_pid = server.health()["worker"]["pid"]
    slow: dict = {}
    t = threading.Thread(target=lambda: slow.update(r=server.predict({"mode": "sleep", "seconds": 8})))
    t.start()
    wait_for(lambda: server.health()["slots"]["busy"] == 1, timeout=30, what="the slow prediction to start")
    assert server.request("POST", "/recycle", headers={"Authorization": "Bearer t"}).status == 202
    # While the successor sets up, the old worker is the one shown (BUSY: its slot runs the slow
    # prediction), with the successor beside it.
    h = wait_for(
        lambda: (lambda h: h if (h.get("successor") or {}).get("pid") else None)(server.health()),
        timeout=30,
        what="a successor with its process",
    )
    assert h["status"] == "BUSY" and h["worker"]["pid"] == old_pid, h
    assert h["successor"]["generation"] == 2 and h["successor"]["status"] == "RECYCLING", h["successor"]
    assert h["successor"]["pid"] not in (None, old_pid), h["successor"]
    # The old worker keeps its slot busy; the successor takes the worker's place once READY.
    h = wait_for(
        lambda: (lambda h: h if h["worker"]["generation"] == 2 and h["status"] == "READY" else None)(server.health()),
        timeout=60,
        what="generation 2 serving",
    )
    assert h["worker"]["pid"] != old_pid and h["worker"]["last_recycle"]["trigger"] == "admin", h["worker"]
    assert "successor" not in h, h
    assert "r" not in slow, "the slow prediction ended before the successor was ready"
    status, body = server.predict({"mode": "count"})
    assert status == 200 and body["output"]["generation"] == 2, body
    assert is_alive(old_pid), "the old worker was stopped while it still ran a prediction"
    t.join(timeout=60)
    status, body = slow["r"]
    assert status == 200 and body["status"] == "succeeded" and body["output"]["generation"] == 1, body
    wait_for(lambda: not is_alive(old_pid), timeout=30, what="the old worker to be stopped")


def test_a_liveness_recycle_keeps_the_unhealthy_worker_serving_until_its_successor_is_ready(serve, tmp_path):
    f = tmp_path / "health"
    f.write_text("ok")
    server = serve("healthcheck", env={**OVERLAP, "HEALTH_FILE": str(f)})
    server.wait_status("READY")
    old_pid = server.health()["worker"]["pid"]
    f.write_text("false")
    # The third failure in a row reaches the liveness threshold: the worker stays UNHEALTHY (it
    # still serves) while its successor sets up.
    assert [server.health()["status"] for _ in range(3)] == ["UNHEALTHY"] * 3
    f.write_text("ok")  # the successor is healthy
    statuses, bad = client_loop(server, lambda: server.health()["worker"]["generation"] >= 2, {"text": "x"})
    assert not bad, bad[:3]
    h = server.wait_status("READY")
    assert h["worker"]["generation"] == 2 and h["worker"]["pid"] != old_pid, h["worker"]
    assert h["worker"]["last_recycle"]["trigger"] == "liveness", h["worker"]
    wait_for(lambda: not is_alive(old_pid), timeout=30, what="the old worker to be stopped")


def test_a_successor_that_fails_setup_ends_defunct_and_stops_the_old_worker(serve):
    server = serve("recycler", env={**OVERLAP, **ADMIN, "CRASH_SETUP_AFTER_RECYCLE": "1"})
    server.wait_status("READY")
    old_pid = server.health()["worker"]["pid"]
    assert server.request("POST", "/recycle", headers={"Authorization": "Bearer t"}).status == 202
    h = server.wait_status("DEFUNCT", timeout=60)
    assert "generation 2" in h["reason"] and "setup broke" in h["reason"], h
    assert h["worker"]["last_recycle"]["succeeded"] is False, h["worker"]
    wait_for(lambda: not is_alive(old_pid), timeout=30, what="the old worker to be stopped")
    # DEFUNCT is shown before the failed successor's stop has ended.
    wait_for(lambda: descendants(server.pid, processes()) == [], timeout=30, what="no worker process left")


def test_a_leaking_model_with_overlap_serves_100_calls_each_worker_under_500_mb(serve):
    # Each recycle sets the successor up while the leaking worker serves: it keeps growing until its
    # successor is READY, or until it is an eighth past the bound (450 MB), when it admits nothing
    # more and a prediction waits for the successor (recycle.admission_wait) instead of a 503; so each
    # tree stays under 500 MB, both together under twice that, and no call is refused.
    server = serve("leaker", env={**OVERLAP, "COGVISOR_RECYCLE_MAX_RSS": "400MB"})
    server.wait_status("READY")
    refused = 0
    with WorkerRssSampler(server.pid) as sampler:
        for i in range(100):

            def attempt():
                nonlocal refused
                status, body = server.predict({"megabytes": 40})
                refused += status == 503
                return None if status == 503 else (status, body)

            status, body = wait_for(attempt, timeout=60, what="a prediction to be admitted")
            assert status == 200 and body["status"] == "succeeded", (i, body)
    peaks = sorted(sampler.worker_peaks.values())
    assert peaks and peaks[-1] <= 500 * MB, f"worker peaks (MB): {[p // MB for p in peaks]}"
    assert sampler.peak <= 1000 * MB, f"both trees together peaked at {sampler.peak // MB} MB"
    assert refused == 0, f"{refused} answers 503"
    h = server.wait_status("READY")
    assert h["worker"]["generation"] >= 9, h["worker"]
    s = metric_samples(server)
    assert s[("cogvisor_predictions_total", (("kind", "prediction"), ("outcome", "succeeded")))] == 100
    print(f"overlap max_rss: {h['worker']['generation'] - 1} recycles, {refused} answers 503, worker peaks "
          f"{[p // MB for p in peaks][-3:]} MB, both together at most {sampler.peak // MB} MB")


def test_overlap_with_a_pool_is_refused_naming_both_keys(serve):
    server = serve("recycler", env={**OVERLAP, "COGVISOR_WORKERS_COUNT": "2"}, wait=None, listen=False)
    assert server.proc.wait(timeout=30) != 0
    err = server.stderr_text()
    assert "recycle.overlap" in err and "workers.count" in err, err[-2000:]


def test_the_old_worker_crashing_while_its_successor_sets_up_makes_predictions_wait(serve):
    # Nothing can serve between the crash and the successor's READY: a prediction waits for the
    # successor (recycle.admission_wait) instead of a 503, and its predict_time leaves the wait out.
    server = serve("recycler", env={**OVERLAP, **ADMIN, "RECYCLE_SETUP_SECONDS": "4"})
    server.wait_status("READY")
    old_pid = server.health()["worker"]["pid"]
    assert server.request("POST", "/recycle", headers={"Authorization": "Bearer t"}).status == 202
    successor = wait_for(
        lambda: (server.health().get("successor") or {}).get("pid"), timeout=30, what="a successor with its process"
    )
    os.kill(old_pid, signal.SIGKILL)
    wait_for(lambda: not is_alive(old_pid), timeout=30, what="the old worker to die")

    def crash_seen():
        # The supervisor sees the exit a moment after the process is gone. Until the successor is
        # READY, the dead worker is shown RECYCLING with the signal, and its successor beside it.
        h = server.health()
        if "successor" not in h:
            return h
        if h["worker"]["pid"] == old_pid and h["status"] == "READY":
            return None
        assert h["status"] == "RECYCLING" and "SIGKILL" in h["reason"], h
        return h

    wait_for(crash_seen, timeout=30, what="the health to show the old worker's crash")
    started = time.monotonic()
    status, body = server.predict({"mode": "sleep", "seconds": 0.01})
    waited = time.monotonic() - started
    assert status == 200 and body["status"] == "succeeded", body
    assert body["output"]["pid"] == successor and body["output"]["generation"] == 2, body
    assert body["metrics"]["predict_time"] < waited, (body["metrics"], waited)
    h = server.wait_status("READY", timeout=60)
    assert h["worker"]["pid"] == successor and h["worker"]["last_recycle"]["trigger"] == "admin", h["worker"]
    print(f"old worker killed during succession: a prediction waited {waited:.2f} s, then 200 from generation 2")
