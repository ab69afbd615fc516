"""Cog's Go integration tests that start a server (replicate/cog integration-tests/concurrent/
concurrent_test.go): TestConcurrentPredictions, TestConcurrentAboveLimit, TestConcurrentAsyncMetrics and
TestSIGTERMDuringSetup, against our own models in tests/models/cogit_*.

`cog serve` there runs the image; here the binary serves the model directory. Each test's docstring
names the Go test it reproduces."""

from __future__ import annotations

import signal
import threading
import time

from helpers import assert_succeeded, is_alive, live_in_group, wait_for


def _in_parallel(
    server, bodies: list[dict], timeout: float = 60
) -> tuple[list[threading.Thread], list[tuple[int, dict] | None]]:
    """Starts one thread per body, each POSTing it to /predictions; returns the threads and the list
    their (status, body) results land in."""
    results: list[tuple[int, dict] | None] = [None] * len(bodies)

    def one(i: int) -> None:
        results[i] = server.post_json("/predictions", bodies[i], timeout=timeout)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(bodies))]
    for t in threads:
        t.start()
    return threads, results


def test_concurrent_predictions_finish_through_a_shutdown(serve):
    """TestConcurrentPredictions: five sync predictions of an async run() (concurrency.max 5, each
    sleeping 1 s) run at once; a POST /shutdown while they are in flight lets all five finish with
    their own output, in well under the 5 s they would take one after another."""
    server = serve("cogit_async_sleep")
    bodies = [{"id": f"id-{i}", "input": {"s": f"sleepyhead{i}", "sleep": 1.0}} for i in range(5)]
    start = time.monotonic()
    threads, results = _in_parallel(server, bodies)
    wait_for(lambda: server.health()["slots"]["busy"] == 5, timeout=10, what="five busy slots")
    status, body = server.post_json("/shutdown", {})
    assert status == 200, body
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - start
    for i, result in enumerate(results):
        assert result is not None, f"prediction {i} got no answer"
        status, body = result
        assert_succeeded(status, body)
        assert body["output"] == f"wake up sleepyhead{i}", body
    assert elapsed < 3, f"five 1 s predictions took {elapsed:.2f} s: not concurrent"
    assert server.wait_exit(timeout=30) == 0


def test_a_prediction_above_the_concurrency_limit_is_409(serve):
    """TestConcurrentAboveLimit: with both slots of concurrency.max 2 busy, a third prediction is
    409 Conflict with status "failed" and an error naming capacity; the two finish normally."""
    server = serve("cogit_above_limit")
    bodies = [{"id": f"id-{i}", "input": {"s": f"sleepyhead{i}", "sleep": 1.0}} for i in range(2)]
    threads, results = _in_parallel(server, bodies)
    wait_for(lambda: server.health()["slots"]["busy"] == 2, timeout=10, what="both slots busy")
    status, body = server.post_json("/predictions", {"id": "extra", "input": {"s": "overflow", "sleep": 1.0}})
    assert status == 409, body
    assert body["status"] == "failed", body
    assert "capacity" in body["error"].lower(), body
    for t in threads:
        t.join(timeout=30)
    for i, result in enumerate(results):
        assert result is not None, f"prediction {i} got no answer"
        status, body = result
        assert_succeeded(status, body)
        assert body["output"] == f"wake up sleepyhead{i}", body


def test_async_metrics_stay_with_their_own_prediction(serve):
    """TestConcurrentAsyncMetrics (replicate/cog issue 2901): five async predictions at once each
    record metrics through current_scope() before and after an await; every response carries its own
    prediction_index, model_name, completed and predict_time, none of another's."""
    server = serve("cogit_async_metrics")
    bodies = [{"id": f"metrics-{i}", "input": {"idx": i, "sleep": 0.5}} for i in range(5)]
    threads, results = _in_parallel(server, bodies)
    for t in threads:
        t.join(timeout=30)
    for i, result in enumerate(results):
        assert result is not None, f"prediction {i} got no answer"
        status, body = result
        assert_succeeded(status, body)
        assert body["output"] == f"done-{i}", body
        metrics = body["metrics"]
        assert metrics["prediction_index"] == i, body
        assert metrics["model_name"] == "test-model", body
        assert metrics["completed"] is True, body
        assert isinstance(metrics["predict_time"], (int, float)), body


def test_sigterm_during_setup_stops_the_server(serve):
    """TestSIGTERMDuringSetup: SIGTERM while setup() is still running (30 s of it) stops the server
    within 15 s, and the worker with it. (The Go test checks that the `cog serve` CLI dies of the
    signal; cogvisor handles it and exits: see docs/cog-integration-tests.md.)"""
    server = serve("cogit_slow_setup", wait="STARTING")
    worker = wait_for(lambda: server.health()["worker"]["pid"], timeout=10, what="the worker pid")
    server.signal(signal.SIGTERM)
    code = server.wait_exit(timeout=15)
    assert code is not None, f"server still running 15 s after SIGTERM during setup\n{server.stderr_tail()}"
    assert code == 0, f"exit code {code}\n{server.stderr_tail()}"
    wait_for(lambda: not is_alive(worker) and not live_in_group(worker), timeout=10, what="the worker to be gone")
