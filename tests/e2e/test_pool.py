"""A worker pool (`workers.count`): each worker its own process with its own slots and generation, a
prediction admitted to a worker with a free slot, `/health-check` showing the pool and every worker,
per-worker environments, and planned recycles rolling one worker at a time under a client."""

from __future__ import annotations

import threading
import time

from helpers import wait_for


def all_ready(server) -> dict:
    """The pool's /health-check once every worker is READY (READY is "at least one")."""
    return wait_for(
        lambda: (lambda h: h if h["pool"]["ready"] == h["pool"]["workers"] else None)(server.health()),
        timeout=60,
        what="every worker READY",
    )


def who(server, **input):
    status, body = server.predict({"mode": "who", **input})
    assert status == 200 and body["status"] == "succeeded", body
    return body["output"]


def at_once(server, n, **input):
    """n predictions sent together; their (status, body) in order."""
    results: list = [None] * n

    def one(i):
        results[i] = server.predict(input)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_two_workers_run_two_sync_predictions_at_once(serve):
    server = serve("pool", extra_args=("--workers-count", "2"))
    h = all_ready(server)
    assert h["status"] == "READY" and h["pool"] == {"workers": 2, "ready": 2}, h
    assert [w["index"] for w in h["workers"]] == [0, 1], h["workers"]
    assert {w["status"] for w in h["workers"]} == {"READY"}, h["workers"]
    assert len({w["pid"] for w in h["workers"]}) == 2, h["workers"]
    assert h["slots"]["total"] == 2, h["slots"]
    results = at_once(server, 2, mode="sleep", seconds=1.5)
    for status, body in results:
        assert status == 200 and body["status"] == "succeeded", body
    assert sorted(body["output"]["index"] for _, body in results) == [0, 1], results
    # Two at once fill the pool; a third is 409, as one worker's one slot is.
    threads_results = at_once(server, 3, mode="sleep", seconds=1.5)
    statuses = sorted(status for status, _ in threads_results)
    assert statuses == [200, 200, 409], statuses


def test_each_worker_gets_its_device_and_environment(serve):
    server = serve(
        "pool",
        env={"COGVISOR_WORKERS_DEVICES": "3,5", "COGVISOR_WORKERS_ENV": "MY_NAME=w{index}-d{device} FIXED=yes"},
        extra_args=("--workers-count", "2"),
    )
    all_ready(server)
    results = at_once(server, 2, mode="sleep", seconds=1.0, names="MY_NAME,FIXED,CUDA_VISIBLE_DEVICES")
    env = {body["output"]["index"]: body["output"]["env"] for _, body in results}
    assert env == {
        0: {"MY_NAME": "w0-d3", "FIXED": "yes", "CUDA_VISIBLE_DEVICES": None},
        1: {"MY_NAME": "w1-d5", "FIXED": "yes", "CUDA_VISIBLE_DEVICES": None},
    }, env


def test_devices_alone_set_cuda_visible_devices(serve):
    server = serve("pool", env={"COGVISOR_WORKERS_DEVICES": "7"}, extra_args=("--workers-count", "2"))
    all_ready(server)
    results = at_once(server, 2, mode="sleep", seconds=1.0, names="CUDA_VISIBLE_DEVICES")
    assert [body["output"]["env"]["CUDA_VISIBLE_DEVICES"] for _, body in results] == ["7", "7"], results


def test_a_secret_in_workers_env_is_refused_at_start(serve):
    server = serve(
        "pool", env={"COGVISOR_WORKERS_ENV": "COGVISOR_ADMIN_TOKEN=x"}, wait=None, listen=False
    )
    assert server.proc.wait(timeout=30) != 0
    err = server.stderr_text()
    assert "workers.env" in err and "COGVISOR_ADMIN_TOKEN" in err, err[-2000:]


def test_twenty_planned_recycles_roll_under_a_client_without_a_503(serve):
    server = serve("pool", env={"COGVISOR_RECYCLE_MAX_PREDICTIONS": "3"}, extra_args=("--workers-count", "2"))
    all_ready(server)
    outcomes: list[int] = []
    failed: list = []

    def recycles() -> int:
        return sum(w["generation"] - 1 for w in server.health()["workers"])

    deadline = time.monotonic() + 240
    while recycles() < 20:
        assert time.monotonic() < deadline, f"{recycles()} recycles in 240 s"
        status, body = server.predict({"mode": "who"})
        outcomes.append(status)
        if status != 200 or body["status"] != "succeeded":
            failed.append((status, body))
    assert not failed, failed[:3]
    assert len(outcomes) >= 60, len(outcomes)
    h = server.health()
    assert h["pool"]["workers"] == 2, h
    wait_for(lambda: server.health()["pool"]["ready"] == 2, timeout=60, what="both workers back")
    # /metrics has each worker's generation, as /health-check does.
    h = server.health()
    r = server.request("GET", "/metrics")
    assert r.status == 200, r.body
    text = r.body.decode()
    for w in h["workers"]:
        line = f'cogvisor_pool_worker_generation{{worker="{w["index"]}"}} {w["generation"]}'
        assert line in text.splitlines(), (line, [ln for ln in text.splitlines() if "pool_worker" in ln])
    assert f'cogvisor_pool_worker_state{{worker="1",state="READY"}} 1' in text.splitlines(), text
