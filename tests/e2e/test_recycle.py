"""Worker recycling: model-requested, admin, planned, after crashes; nothing lost, nothing leaked."""

from __future__ import annotations

import json
import os
import signal
import threading

from helpers import is_alive, live_descendants, wait_for


def predict_until_admitted(server, input, timeout=60):
    """Submits a prediction, retrying while the worker is being replaced (503 with Retry-After)."""
    seen_503 = []

    def attempt():
        status, body = server.predict(input)
        if status == 503:
            seen_503.append(body)
            return None
        return status, body

    status, body = wait_for(attempt, timeout=timeout, what="a prediction to be admitted")
    return status, body, seen_503


def wait_ready(server, what, generation=None, not_pid=None, timeout=60):
    """Polls /health-check until READY (with `generation`, or with a worker other than `not_pid`)."""

    def check():
        h = server.health()
        if h["status"] != "READY":
            return None
        if generation is not None and h["worker"]["generation"] != generation:
            return None
        if not_pid is not None and h["worker"]["pid"] in (None, not_pid):
            return None
        return h

    return wait_for(check, timeout=timeout, what=what)


def start_slow(server, seconds):
    """Runs a sleeping prediction in a thread until one slot is busy with it; join the thread, then
    read `results["slow"]`."""
    results = {}
    t = threading.Thread(target=lambda: results.update(slow=server.predict({"mode": "sleep", "seconds": seconds})))
    t.start()
    wait_for(lambda: server.health()["slots"]["busy"] == 1, timeout=30, what="the slow prediction to start")
    return t, results


def test_recycle_every_third_prediction_serves_thirty(serve):
    server = serve("recycler")
    generations = []
    for i in range(30):
        status, body, _ = predict_until_admitted(server, {"mode": "count"})
        assert status == 200 and body["status"] == "succeeded", (i, body)
        generations.append(body["output"]["generation"])
        # The prediction that asked for the recycle still completed with its result.
        assert body["output"]["count"] in (1, 2, 3), body
    assert generations == sorted(generations), generations
    assert generations[-1] >= 9, generations
    # Generations after the first ran recycle_setup(), not setup().
    status, body, _ = predict_until_admitted(server, {"mode": "count"})
    assert body["output"]["setup"] == "recycle_setup", body
    h = server.wait_status("READY")
    assert h["worker"]["generation"] >= 10, h
    assert h["worker"]["restarts"] == h["worker"]["generation"] - 1, h
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "model" and "every third" in last["reason"], last
    assert last["succeeded"] is True and last["duration_seconds"] > 0, last


def test_admin_recycle_needs_the_token(serve):
    server = serve("recycler", env={"COGVISOR_ADMIN_TOKEN": "s3cret"})
    assert server.request("POST", "/recycle").status == 403
    assert server.request("POST", "/recycle", headers={"Authorization": "Bearer nope"}).status == 403
    r = server.request(
        "POST",
        "/recycle",
        body=json.dumps({"reason": "rotate weights"}).encode(),
        headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"},
    )
    assert r.status == 202, r.body
    h = wait_ready(server, "generation 2 READY", generation=2)
    assert h["worker"]["last_recycle"]["trigger"] == "admin", h
    assert h["worker"]["last_recycle"]["reason"] == "rotate weights", h


def test_in_flight_predictions_past_the_drain_timeout_fail_naming_the_recycle(serve):
    server = serve("recycler", env={"COGVISOR_ADMIN_TOKEN": "t", "COGVISOR_RECYCLE_DRAIN_TIMEOUT": "500ms"})
    t, results = start_slow(server, 60)
    r = server.request("POST", "/recycle", headers={"Authorization": "Bearer t"})
    assert r.status == 202, r.body
    t.join(timeout=60)
    status, body = results["slow"]
    assert status == 200 and body["status"] == "failed", body
    assert "recycled" in body["error"] and "admin" in body["error"], body
    server.wait_status("READY", timeout=60)


def test_recycling_refuses_predictions_with_retry_after(serve):
    server = serve("recycler", env={"COGVISOR_ADMIN_TOKEN": "t", "COGVISOR_RECYCLE_DRAIN_TIMEOUT": "30s"})
    t, results = start_slow(server, 2)
    assert server.request("POST", "/recycle", headers={"Authorization": "Bearer t"}).status == 202
    h = server.wait_status("RECYCLING")
    assert h["reason"] == "requested with POST /recycle", h
    r = server.request("POST", "/predictions", body=b'{"input": {}}', headers={"Content-Type": "application/json"})
    assert r.status == 503, r.body
    assert r.headers.get("retry-after") == "1", r.headers
    assert "recycled" in r.json()["error"], r.body
    t.join(timeout=60)
    assert results["slow"][1]["status"] == "succeeded", results
    server.wait_status("READY", timeout=60)


def test_a_setsid_daemon_of_the_old_worker_does_not_survive_the_recycle(serve, tmp_path):
    server = serve("recycler")
    pid_file = tmp_path / "daemon.pid"
    status, body = server.predict({"mode": "daemon", "pid_file": str(pid_file)})
    assert status == 200 and body["status"] == "succeeded", body
    old_worker = body["output"]["pid"]
    daemon = int(pid_file.read_text())
    server.track(daemon)
    h = wait_ready(server, "generation 2 READY", generation=2)
    wait_for(lambda: not is_alive(daemon), timeout=30, what=f"the setsid daemon {daemon} to be gone")
    assert not is_alive(old_worker)
    assert live_descendants(old_worker) == []
    assert h["worker"]["pid"] != old_worker


def test_rerun_setup_runs_setup_again(serve):
    server = serve("recycler")
    status, body = server.predict({"mode": "recycle"})
    assert body["status"] == "succeeded", body
    status, body, _ = predict_until_admitted(server, {"mode": "sleep", "seconds": 0})
    assert body["output"]["generation"] == 2 and body["output"]["setup"] == "setup", body


def test_a_setup_that_crashes_after_the_first_recycle_ends_defunct(serve):
    server = serve("recycler", env={"CRASH_SETUP_AFTER_RECYCLE": "1"})
    for _ in range(3):
        status, body, _ = predict_until_admitted(server, {"mode": "count"})
        assert body["status"] == "succeeded", body
    h = server.wait_status("DEFUNCT", timeout=60)
    assert "setup broke in generation 2" in h["reason"], h
    assert h["worker"]["last_recycle"]["succeeded"] is False, h
    r = server.request("GET", "/livez")
    assert r.status == 503 and r.json()["status"] == "DEFUNCT", r.body
    assert server.request("GET", "/readyz").status == 503
    status, body = server.predict({"mode": "count"})
    assert status == 503, body


def test_max_predictions_recycles_the_worker(serve):
    server = serve("recycler", env={"COGVISOR_RECYCLE_MAX_PREDICTIONS": "2"})
    outputs = []
    for _ in range(5):
        status, body, _ = predict_until_admitted(server, {"mode": "sleep", "seconds": 0})
        assert body["status"] == "succeeded", body
        outputs.append(body["output"]["generation"])
    assert outputs == [1, 1, 2, 2, 3], outputs
    h = server.health()
    assert h["worker"]["last_recycle"]["trigger"] == "max_predictions", h


def test_sigkill_of_an_idle_worker_restarts_it(serve):
    server = serve("recycler")
    old = server.health()["worker"]["pid"]
    os.kill(old, signal.SIGKILL)
    h = wait_ready(server, "READY with a new worker", not_pid=old)
    assert h["worker"]["restarts"] == 1 and h["worker"]["generation"] == 2, h
    assert h["worker"]["last_recycle"]["trigger"] == "worker_exit", h
    assert "SIGKILL" in h["worker"]["last_recycle"]["reason"], h
    status, body = server.predict({"mode": "sleep", "seconds": 0})
    assert body["status"] == "succeeded" and body["output"]["setup"] == "setup", body


def test_past_the_restart_budget_the_state_is_defunct(serve):
    server = serve("recycler", env={"COGVISOR_RECYCLE_RESTART_BUDGET": "1 in 300s"})
    first = server.health()["worker"]["pid"]
    os.kill(first, signal.SIGKILL)
    h = wait_ready(server, "READY with a new worker", not_pid=first)
    os.kill(h["worker"]["pid"], signal.SIGKILL)
    h = server.wait_status("DEFUNCT", timeout=60)
    assert "restart budget exhausted" in h["reason"], h
    assert server.request("GET", "/livez").status == 503
