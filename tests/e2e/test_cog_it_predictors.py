"""Cog's integration tests of predictor shapes and failures (replicate/cog integration-tests/tests),
i–z: non_base_predictor_class, non_base_predictor_function, subdirectory_predictor, predict_sys_exit,
iterator_error_midstream and scope_context, against our own models in tests/models/cogit_*."""

from __future__ import annotations

import json

import pytest

from helpers import assert_succeeded
from receiver import Receiver


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


# non_base_predictor_class: a class that does not derive from BasePredictor serves like one.
def test_class_without_base_predictor(serve):
    server = serve("cogit_plain_class")
    status, body = server.predict({"text": "world"})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"
    status, body = server.predict({})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"


# non_base_predictor_function: `predict: predict.py:predict`, a plain function.
def test_plain_function_predictor(serve):
    server = serve("cogit_function_predict")
    status, doc = server.get_json("/openapi.json")
    assert doc["components"]["schemas"]["Input"]["properties"]["text"]["default"] == "world", doc
    status, body = server.predict({"text": "cogvisor"})
    assert_succeeded(status, body)
    assert body["output"] == "hello cogvisor"


# subdirectory_predictor: `run: my-subdir/run.py:Runner` imports mylib.py from the project root.
def test_runner_in_a_subdirectory_imports_from_the_root(serve):
    server = serve("cogit_subdir")
    status, body = server.predict({"s": "world"})
    assert_succeeded(status, body)
    assert body["output"] == "hello world"


# predict_sys_exit: sys.exit(1) in run() fails that prediction naming SystemExit; the same worker
# serves the next one.
def test_sys_exit_fails_the_prediction_and_the_worker_stays(serve):
    server = serve("cogit_sys_exit")
    pid = server.health()["worker"]["pid"]
    status, body = server.predict({"do_exit": True})
    assert status == 200 and body["status"] == "failed", body
    assert body["error"] == "SystemExit: 1", body
    assert "sys.exit(1)" in body["logs"], body
    status, body = server.predict({"do_exit": False})
    assert_succeeded(status, body)
    assert body["output"] == "still alive"
    h = server.health()
    assert h["status"] == "READY" and h["worker"]["pid"] == pid and h["worker"]["restarts"] == 0, h


# iterator_error_midstream: a generator that yields three items and raises fails the prediction; the
# `completed` webhook carries the error and the items yielded before it.
def test_generator_raising_midstream_fails_with_its_error(serve, receiver):
    server = serve("cogit_iterator_error")
    body = {
        "id": "iter-error-test",
        "webhook": f"{receiver.url}/hook",
        "webhook_events_filter": ["completed"],
    }
    r = server.request(
        "POST",
        "/predictions",
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Prefer": "respond-async"},
    )
    assert r.status == 202, r.body
    hooks = receiver.wait_terminal()
    assert len(hooks) == 1, hooks
    final = hooks[0]
    assert final["id"] == "iter-error-test" and final["status"] == "failed", final
    assert final["error"] == "RuntimeError: generator exploded", final
    assert final["output"] == ["chunk-1", "chunk-2", "chunk-3"], final
    assert 'raise RuntimeError("generator exploded")' in final["logs"], final

    status, sync = server.predict({})
    assert status == 200 and sync["status"] == "failed", sync
    assert sync["error"] == "RuntimeError: generator exploded", sync


# scope_context: the request's `context` is current_scope().context; without one it is empty.
def test_request_context_reaches_current_scope(serve):
    server = serve("cogit_scope_context")
    status, body = server.post_json(
        "/predictions", {"input": {}, "context": {"api_token": "secret123", "region": "us-east-1"}}
    )
    assert_succeeded(status, body)
    assert body["output"] == "api_token:secret123, region:us-east-1"
    status, body = server.predict({"expect_empty": "true"})
    assert_succeeded(status, body)
    assert body["output"] == "context_is_empty=True"
