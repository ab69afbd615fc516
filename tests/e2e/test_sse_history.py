"""COG_STREAM_HISTORY_CAPACITY: how many SSE events a prediction keeps for subscribers that attach late
(default 1024; 0 keeps none). A late subscriber whose history lost events gets Cog's `error` event with
the number skipped, and the stream ends."""

import http.client
import json

import pytest

from helpers import EXAMPLES, free_port, last_line, run_to_exit, wait_for

# Yields `count` items at once, then holds the prediction open for `hold` seconds; prints nothing, so
# its events are the start, one output per item, and the completion.
PREDICT = '''
import time
from typing import Iterator

from cog import BasePredictor, streaming


class Predictor(BasePredictor):
    @streaming
    def predict(self, count: int = 4, hold: float = 2.0) -> Iterator[str]:
        for i in range(count):
            yield f"item-{i}"
        time.sleep(hold)
'''


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "stream-history"
    path.mkdir()
    (path / "cog.yaml").write_text('predict: "predict.py:Predictor"\n')
    (path / "predict.py").write_text(PREDICT)
    return path


def put(server, pid, body, headers):
    return server.request(
        "PUT", f"/predictions/{pid}", body=json.dumps(body).encode(), headers={"Content-Type": "application/json", **headers}
    )


def attach(server, pid, body, timeout=30):
    """Attaches an SSE stream to prediction `pid` with a PUT and reads it to its end."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request(
            "PUT",
            f"/predictions/{pid}",
            body=json.dumps(body),
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        r = conn.getresponse()
        assert r.status == 200, r.read()
        events, name = [], None
        for raw in r:
            line = raw.decode().rstrip("\n")
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
        return events
    finally:
        conn.close()


def start_async(server, pid, body):
    r = put(server, pid, body, {"Prefer": "respond-async"})
    assert r.status == 202, r.body
    assert r.json()["status"] == "starting"


def wait_outputs(server, pid, n):
    return wait_for(
        lambda: (lambda s, b: b if len(b.get("output") or []) >= n else None)(*server.get_json(f"/predictions/{pid}")),
        timeout=30,
        what=f"{pid} to have {n} outputs",
    )


def test_a_late_subscriber_whose_history_lost_events_gets_the_error(serve, model):
    server = serve(model, env={"COG_STREAM_HISTORY_CAPACITY": "2"})
    body = {"id": "rt", "input": {"count": 4, "hold": 3}}
    start_async(server, "rt", body)
    wait_outputs(server, "rt", 4)
    # start + 4 outputs = 5 events, 2 kept: 3 skipped. Only the error, then the stream ends.
    events = attach(server, "rt", body)
    assert events == [("error", {"error": "SSE stream replay truncated; events were dropped", "skipped": 3})]
    assert server.get_json("/predictions/rt")[1]["status"] == "processing"


def test_zero_keeps_no_history_but_live_events_still_flow(serve, model):
    server = serve(model, env={"COG_STREAM_HISTORY_CAPACITY": "0"})
    body = {"id": "rd", "input": {"count": 3, "hold": 1.5}}
    start_async(server, "rd", body)
    wait_outputs(server, "rd", 3)
    events = attach(server, "rd", body)
    assert [name for name, _ in events] == ["completed"], events
    completed = events[0][1]
    assert completed["status"] == "succeeded"
    assert completed["output"] == ["item-0", "item-1", "item-2"]
    # A subscriber to a prediction that has already ended gets its completion at once.
    assert [name for name, _ in attach(server, "rd", body)] == ["completed"]


def test_the_default_history_replays_everything(serve, model):
    server = serve(model)
    body = {"id": "rf", "input": {"count": 3, "hold": 1}}
    start_async(server, "rf", body)
    wait_outputs(server, "rf", 3)
    events = attach(server, "rf", body)
    assert [name for name, _ in events] == ["start", "output", "output", "output", "completed"], events
    assert [d for name, d in events if name == "output"][2] == {"chunk": "item-2", "index": 2}


@pytest.mark.parametrize("value", ["lots", "-1", "2.5"])
def test_an_invalid_capacity_stops_the_server_naming_the_value(value):
    result = run_to_exit(
        ["serve", str(EXAMPLES / "hello"), "--host", "127.0.0.1", "--port", str(free_port())],
        env={"COG_STREAM_HISTORY_CAPACITY": value},
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, stderr
    line = last_line(stderr)
    assert f'COG_STREAM_HISTORY_CAPACITY="{value}"' in line, line
