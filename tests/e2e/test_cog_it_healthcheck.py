"""Cog's integration tests healthcheck*.txtar (replicate/cog integration-tests/tests), black box: a
model's healthcheck(), sync or async, healthy, False, raising or past the 5 s limit, before, during and
after predictions. Each test names the txtar it reproduces; the models are tests/models/cogit_hc_*."""

from __future__ import annotations

import threading

from helpers import wait_for

# Not `health.on_failure: recycle` (the default): these tests look at UNHEALTHY itself, as Cog reports it.
LOG_ONLY = {"COGVISOR_HEALTH_ON_FAILURE": "log"}


def hello(server, text: str) -> None:
    status, body = server.predict({"text": text})
    assert status == 200 and body["status"] == "succeeded", body
    assert body["output"] == f"hello {text}", body


def assert_ready(server) -> None:
    h = server.health()
    assert h["status"] == "READY", h
    assert "user_healthcheck_error" not in h, h


def test_healthcheck_ready_before_and_after_a_prediction(serve):
    """healthcheck.txtar: a runner (`run:`) whose healthcheck() returns True."""
    server = serve("cogit_hc_runner")
    assert_ready(server)
    hello(server, "world")
    assert_ready(server)


def test_healthcheck_custom_on_a_base_predictor(serve):
    """healthcheck_custom.txtar: the same with `predict:` and a BasePredictor."""
    server = serve("cogit_hc_predictor")
    assert_ready(server)
    hello(server, "world")
    assert_ready(server)


def test_healthcheck_async_with_a_sync_run(serve):
    """healthcheck_async.txtar: async healthcheck() (awaiting 0.1 s) beside a sync run()."""
    server = serve("cogit_hc_async")
    assert_ready(server)
    hello(server, "world")
    assert_ready(server)


def test_healthcheck_async_custom_with_an_async_predict(serve):
    """healthcheck_async_custom.txtar: async healthcheck() beside an async predict()."""
    server = serve("cogit_hc_async_custom")
    assert_ready(server)
    hello(server, "world")
    assert_ready(server)


def test_healthcheck_repeated_calls(serve):
    """healthcheck_repeated_calls.txtar: 50 checks in a row stay READY, and predictions still run."""
    server = serve("cogit_hc_runner")
    for i in range(50):
        assert server.health()["status"] == "READY", i
    hello(server, "world")
    assert_ready(server)


def test_healthcheck_immediately_after_prediction(serve):
    """healthcheck_immediately_after_prediction.txtar: prediction, check, three times, no pause."""
    server = serve("cogit_hc_runner")
    for text in ("world", "again", "final"):
        hello(server, text)
        assert_ready(server)


def test_healthcheck_during_prediction(serve):
    """healthcheck_during_prediction.txtar: checks answer while a 5 s prediction runs, with no healthcheck
    error, and the prediction's output is unharmed. The txtar expects READY; coglet 0.23.1 answers BUSY
    while every slot is in use (HealthSnapshot::is_busy), and so does cogvisor."""
    server = serve("cogit_hc_during")
    result: dict = {}

    def run() -> None:
        result["answer"] = server.predict({"sleep_time": 5}, timeout=60)

    t = threading.Thread(target=run)
    t.start()
    try:
        wait_for(lambda: server.health()["status"] == "BUSY", timeout=30, what="the prediction to start")
        for _ in range(3):
            h = server.health()
            assert h["status"] == "BUSY", h
            assert "user_healthcheck_error" not in h, h
            assert t.is_alive(), "the checks should have run while the prediction was running"
    finally:
        t.join(timeout=60)
    status, body = result["answer"]
    assert status == 200 and body["status"] == "succeeded", body
    assert body["output"] == "slept for 5 seconds", body
    assert_ready(server)


def test_healthcheck_unhealthy_after_startup(serve):
    """healthcheck_unhealthy.txtar: True at startup, then False: UNHEALTHY with Cog's text."""
    server = serve("cogit_hc_second_call", env=LOG_ONLY)
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: user-defined healthcheck returned False", h


def test_healthcheck_exception_after_startup(serve):
    """healthcheck_exception.txtar: True at startup, then raises: UNHEALTHY naming the exception."""
    server = serve("cogit_hc_second_call", env={"HC_MODE": "raise", **LOG_ONLY})
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: RuntimeError: Critical system error", h


def test_healthcheck_async_unhealthy(serve):
    """healthcheck_async_unhealthy.txtar: an async healthcheck() returning False from the start."""
    server = serve("cogit_hc_async_bad", env=LOG_ONLY, wait="UNHEALTHY")
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: user-defined healthcheck returned False", h


def test_healthcheck_async_exception(serve):
    """healthcheck_async_exception.txtar: an async healthcheck() raising from the start."""
    server = serve("cogit_hc_async_bad", env={"HC_MODE": "raise", **LOG_ONLY}, wait="UNHEALTHY")
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: RuntimeError: Async healthcheck error", h


def _times_out_after_the_trigger(server) -> None:
    assert_ready(server)
    status, body = server.predict({"text": "trigger_slow"})
    assert status == 200 and body["status"] == "succeeded", body
    h = server.health()
    assert h["status"] == "UNHEALTHY", h
    assert h["user_healthcheck_error"] == "Healthcheck failed: user-defined healthcheck timed out after 5.0 seconds", h


def test_healthcheck_timeout(serve):
    """healthcheck_timeout.txtar: a sync healthcheck() sleeping 10 s fails at the default 5 s limit."""
    _times_out_after_the_trigger(serve("cogit_hc_slow", env=LOG_ONLY))


def test_healthcheck_async_timeout(serve):
    """healthcheck_async_timeout.txtar: the same with an async healthcheck()."""
    _times_out_after_the_trigger(serve("cogit_hc_async_slow", env=LOG_ONLY))


def test_a_failing_healthcheck_while_busy_is_unhealthy(serve):
    """Beside healthcheck_during_prediction.txtar: coglet 0.23.1 runs no healthcheck() while every slot
    is busy and answers BUSY; cogvisor runs it (off the control loop) and a failure is UNHEALTHY, so a
    bad model is seen while it works (docs/compatibility.md)."""
    server = serve("cogit_hc_during", env={"HC_MODE": "false", **LOG_ONLY}, wait="UNHEALTHY")
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("answer", server.predict({"sleep_time": 3}, timeout=60)))
    t.start()
    try:
        wait_for(lambda: server.health()["slots"]["busy"] == 1, timeout=30, what="the prediction to start")
        h = server.health()
        assert t.is_alive(), "the check should have run while the prediction was running"
        assert h["status"] == "UNHEALTHY", h
        assert h["user_healthcheck_error"] == "Healthcheck failed: user-defined healthcheck returned False", h
    finally:
        t.join(timeout=60)
    status, body = result["answer"]
    assert status == 200 and body["output"] == "slept for 3 seconds", body
