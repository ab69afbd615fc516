"""An output nested deeper than the supervisor parses (serde_json stops at 128 levels, the message
object included) fails its prediction with an error naming the limit, and the worker serves on: same
pid, no setup rerun, no poisoned slot. Before the fix the frame could not be parsed: the slot was
poisoned, the worker replaced and setup run again."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("levels", [101, 127, 200, 5000])
def test_an_output_too_deep_fails_the_prediction_and_keeps_the_worker(start, tmp_path, levels):
    setups = tmp_path / "setups"
    f = start("bounded", env={"BOUNDED_SETUPS": str(setups)})
    before = f.server.health()["worker"]

    status, body = f.predict(levels=levels)
    assert status == 200 and body["status"] == "failed", body
    # the output object is one level, the nested list the rest
    assert body["error"].startswith("ValueError: output is nested more than 100 levels deep (at output['value']"), body

    h = f.server.health()
    assert h["status"] == "READY" and h["slots"]["poisoned"] == [], h
    assert h["worker"]["pid"] == before["pid"] and h["worker"]["restarts"] == 0, h
    status, body = f.predict(levels=99)  # 100 levels with the object: the deepest allowed
    assert body["status"] == "succeeded", body
    depth, value = 0, body["output"]["value"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert (depth, value) == (99, "leaf")
    assert len(setups.read_text().splitlines()) == 1, "setup ran again"
    f.stop_cleanly()
