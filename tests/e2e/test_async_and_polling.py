"""Async predictions (Prefer: respond-async), polling by id, and idempotent PUT."""

import json

from helpers import wait_for


def put(server, path, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    r = server.request("PUT", path, body=json.dumps(body).encode(), headers=h)
    return r.status, r.json()


def post(server, path, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    r = server.request("POST", path, body=json.dumps(body).encode(), headers=h)
    return r.status, r.json()


def test_async_prediction_answers_202_and_can_be_polled(serve):
    server = serve("slow")
    status, body = post(server, "/predictions", {"id": "a1", "input": {"seconds": 0.5}}, {"Prefer": "respond-async"})
    assert status == 202, body
    assert body["id"] == "a1"
    # As Cog: the 202 reports the prediction as created, `starting`, not yet started.
    assert body["status"] == "starting"
    assert "started_at" not in body
    assert body["input"] == {"seconds": 0.5}
    assert "created_at" in body
    # Later GETs show it running.
    status, running = server.get_json("/predictions/a1")
    assert status == 200 and running["status"] in ("processing", "succeeded"), running
    assert "started_at" in running

    final = wait_for(
        lambda: (lambda s, b: b if b.get("status") == "succeeded" else None)(*server.get_json("/predictions/a1")),
        timeout=30,
        what="a1 to succeed",
    )
    assert final["output"] == "done"
    assert final["metrics"]["predict_time"] > 0
    for key in ("created_at", "started_at", "completed_at"):
        assert key in final


def test_unknown_prediction_is_404(serve):
    server = serve("hello")
    status, body = server.get_json("/predictions/nope")
    assert status == 404
    assert body == {"error": "Prediction not found"}


def test_put_of_a_finished_id_returns_the_result_without_running_again(serve):
    server = serve("hello")
    status, first = put(server, "/predictions/p1", {"input": {"text": "a"}})
    assert status == 200 and first["status"] == "succeeded", first
    # Same id again, even with another input: the stored result, not a second run.
    status, again = put(server, "/predictions/p1", {"input": {"text": "b"}})
    assert status == 200, again
    assert again["output"] == "hello a"
    assert again["logs"] == first["logs"]


def test_put_of_a_running_id_returns_its_state(serve):
    server = serve("slow")
    status, body = put(server, "/predictions/r1", {"input": {"seconds": 2}}, {"Prefer": "respond-async"})
    assert status == 202, body
    # A PUT that creates answers like an async POST: `starting`, no `started_at`.
    assert body["status"] == "starting" and "started_at" not in body, body
    # A PUT that attaches answers the current state.
    status, body = put(server, "/predictions/r1", {"input": {"seconds": 2}})
    assert status == 202, body
    assert body["status"] == "processing"
    assert "started_at" in body


def test_put_with_a_different_body_id_is_422(serve):
    server = serve("hello")
    status, body = put(server, "/predictions/x1", {"id": "x2", "input": {}})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "id"]
    assert "must match" in body["detail"][0]["msg"]


def test_cancel_of_an_async_prediction(serve):
    server = serve("slow")
    post(server, "/predictions", {"id": "c1", "input": {"seconds": 30}}, {"Prefer": "respond-async"})
    status, body = post(server, "/predictions/c1/cancel", {})
    assert (status, body) == (200, {})
    final = wait_for(
        lambda: (lambda s, b: b if b.get("status") == "canceled" else None)(*server.get_json("/predictions/c1")),
        timeout=30,
        what="c1 to be canceled",
    )
    assert "completed_at" in final
    status, body = post(server, "/predictions/c1/cancel", {})
    assert (status, body) == (404, {})
