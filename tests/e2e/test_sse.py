"""Server-sent events for streaming models."""

import http.client
import json
import time

from helpers import wait_for


def read_events(server, body, timeout=30, stop_after=None):
    """Opens an SSE prediction and returns the (event, data) pairs until the stream ends."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    conn.request(
        "POST",
        "/predictions",
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    r = conn.getresponse()
    assert r.status == 200, r.read()
    assert r.getheader("content-type").startswith("text/event-stream")
    events, name, arrivals = [], None, []
    start = time.monotonic()
    for raw in r:
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((name, json.loads(line.split(":", 1)[1])))
            arrivals.append(time.monotonic() - start)
            if stop_after is not None and len(events) >= stop_after:
                conn.close()
                return events, arrivals
    conn.close()
    return events, arrivals


def test_events_arrive_as_the_model_yields(serve):
    server = serve("streaming")
    events, arrivals = read_events(server, {"input": {"n": 3, "delay": 0.3}})
    names = [e for e, _ in events]
    assert names[0] == "start"
    assert names[-1] == "completed"
    outputs = [d for e, d in events if e == "output"]
    assert outputs == [{"chunk": "t0", "index": 0}, {"chunk": "t1", "index": 1}, {"chunk": "t2", "index": 2}]
    logs = [d for e, d in events if e == "log"]
    assert logs[0] == {"data": "tok 0\n", "source": "stdout"}
    completed = events[-1][1]
    assert completed["status"] == "succeeded"
    assert completed["output"] == ["t0", "t1", "t2"]
    # The first output came well before the end: streamed, not collected.
    first_output = arrivals[names.index("output")]
    assert first_output < arrivals[-1] - 0.3


def test_a_disconnected_sse_client_cancels_its_prediction(serve):
    server = serve("streaming")
    events, _ = read_events(server, {"id": "s1", "input": {"n": 100, "delay": 0.1}}, stop_after=2)
    assert events[0][0] == "start"
    final = wait_for(
        lambda: (lambda s, b: b if b.get("status") == "canceled" else None)(*server.get_json("/predictions/s1")),
        timeout=30,
        what="s1 to be canceled after its subscriber left",
    )
    assert len(final.get("output", [])) < 100


def test_sse_is_refused_for_models_that_do_not_stream(serve):
    server = serve("hello")
    r = server.request(
        "POST",
        "/predictions",
        body=b'{"input": {}}',
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    assert r.status == 406
    assert "streaming" in r.json()["error"]
