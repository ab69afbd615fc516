"""The prediction watchdog: predict_timeout cancels an overdue prediction; a cancel that does not stop the
model within cancel_grace poisons its slot, and the worker is replaced."""

from __future__ import annotations

import time

from helpers import wait_for


def test_predict_timeout_fails_an_overdue_prediction(serve):
    server = serve("slow", env={"COGVISOR_PREDICT_TIMEOUT": "1s"})
    started = time.monotonic()
    status, body = server.predict({"seconds": 3})
    assert status == 200 and body["status"] == "failed", body
    assert "timed out" in body["error"] and "predict_timeout" in body["error"], body
    assert time.monotonic() - started < 20
    status, body = server.predict({"seconds": 0})
    assert body["status"] == "succeeded", body


def test_a_cancel_that_does_not_stop_the_model_poisons_the_slot_and_recycles(serve):
    # time.sleep in a sync predictor cannot be interrupted by the injected exception.
    server = serve("slow", env={"COGVISOR_CANCEL_GRACE": "1s"})
    old = server.health()["worker"]["pid"]
    r = server.request(
        "POST",
        "/predictions",
        body=b'{"id": "stuck", "input": {"seconds": 60}}',
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202, r.body
    wait_for(lambda: server.health()["slots"]["busy"] == 1, timeout=30, what="the prediction to start")
    started = time.monotonic()
    assert server.request("POST", "/predictions/stuck/cancel").status == 200
    final = wait_for(
        lambda: (lambda s, b: b if b.get("status") in ("canceled", "failed", "succeeded") else None)(
            *server.get_json("/predictions/stuck")
        ),
        timeout=30,
        what="the prediction to end",
    )
    assert final["status"] == "canceled", final
    assert time.monotonic() - started < 15
    h = wait_for(
        lambda: (lambda h: h if h["status"] == "READY" and h["worker"]["pid"] != old else None)(server.health()),
        timeout=60,
        what="a new worker",
    )
    assert h["worker"]["last_recycle"]["trigger"] == "all_slots_poisoned", h
    assert "did not stop within 1.0s of being cancelled" in h["worker"]["last_recycle"]["reason"], h
