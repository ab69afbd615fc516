"""Black-box worker tests of what bounds a prediction's messages: outputs too deep for the supervisor's
parser fail the prediction (the slot and the worker go on), and printed lines are batched into few log
messages without losing their order or their promptness."""

from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from harness import Supervisor, logs, outputs


@pytest.fixture
def start() -> Iterator[Any]:
    made: list[Supervisor] = []

    def make(files: dict[str, str], **kw: Any) -> Supervisor:
        sup = Supervisor(files, **kw)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        sup.close()


def started(start: Any, files: dict[str, str], **kw: Any) -> Supervisor:
    sup = start(files, **kw)
    msg = sup.ready()
    assert msg["type"] == "ready", msg
    return sup


DEEP = """
import os
from typing import Any
from cog import BasePredictor

def nested(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value

class Predictor(BasePredictor):
    def predict(self, levels: int, stream: bool = False) -> Any:
        if stream:
            return iter([nested(1), nested(levels)])
        return {"pid": os.getpid(), "value": nested(levels - 1)}
"""

ASYNC_DEEP = DEEP.replace("    def predict(", "    async def predict(")


@pytest.mark.parametrize("source", [DEEP, ASYNC_DEEP], ids=["sync", "async"])
def test_an_output_too_deep_fails_the_prediction_and_the_slot_goes_on(start: Any, source: str) -> None:
    sup = started(start, {"predict.py": source})
    sup.predict(0, "ok", {"levels": 100})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done", msgs[-1]
    assert outputs(msgs)[0]["value"] == outputs(msgs)[0]["value"]  # it arrived, 100 levels deep
    for n, (levels, stream) in enumerate([(101, False), (127, False), (101, True)]):
        sup.predict(0, f"deep{n}", {"levels": levels, "stream": stream})
        msgs = sup.until_terminal(0)
        assert msgs[-1]["type"] == "failed", msgs[-1]
        assert msgs[-1]["error"].startswith("ValueError: output is nested more than 100 levels deep"), msgs[-1]
        if stream:
            assert outputs(msgs) == [[1]]  # the items before the deep one were sent
    sup.predict(0, "after", {"levels": 2})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done" and outputs(msgs)[0]["value"] == [1]
    assert not [m for m in sup.control_seen if m["type"] == "failed"], sup.control_seen  # no slot poisoned


PRINTER = """
import sys, time
from cog import BasePredictor

class Predictor(BasePredictor):
    def predict(self, lines: int, wait: float = 0.0) -> str:
        for i in range(lines):
            print(f"line {i}")
            if i % 1000 == 999:
                print(f"err {i}", file=sys.stderr)
        sys.stdout.write("no newline yet")
        sys.stdout.flush()
        time.sleep(wait)
        return "done"
"""


def test_prints_are_batched_in_order(start: Any) -> None:
    sup = started(start, {"predict.py": PRINTER})
    sup.predict(0, "p", {"lines": 20000})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done", msgs[-1]
    log_msgs = [m for m in msgs if m["type"] == "log"]
    # 20,000 prints of ~10 bytes: a handful of messages, not one per line
    assert len(log_msgs) < 200, len(log_msgs)
    expected: list[tuple[str, str]] = []
    for i in range(20000):
        expected.append(("stdout", f"line {i}\n"))
        if i % 1000 == 999:
            expected.append(("stderr", f"err {i}\n"))
    expected.append(("stdout", "no newline yet"))
    got: list[tuple[str, str]] = []
    for m in log_msgs:
        got.extend((m["source"], line) for line in m["data"].splitlines(keepends=True))
    assert got == expected
    # the output follows every log line
    assert [m["type"] for m in msgs[-2:]] == ["output", "done"]


def test_a_flushed_print_arrives_while_the_prediction_still_runs(start: Any) -> None:
    sup = started(start, {"predict.py": PRINTER})
    sup.predict(0, "p", {"lines": 1, "wait": 5.0})
    t0 = time.monotonic()
    first = sup.next_slot(0)
    elapsed = time.monotonic() - t0
    second = sup.next_slot(0)
    assert first == {"type": "log", "source": "stdout", "data": "line 0\nno newline yet"}, (first, second)
    assert elapsed < 2.0, elapsed  # well before the 5 s sleep ends
    assert second is not None and second["type"] == "output"


ASYNC_PRINTER = """
import asyncio
from cog import BasePredictor

class Predictor(BasePredictor):
    async def predict(self, n: int):
        for i in range(n):
            print(f"before {i}")
            await asyncio.to_thread(print, f"thread {i}")
            yield i
"""


def test_async_prints_stay_ordered_with_outputs(start: Any) -> None:
    sup = started(start, {"predict.py": ASYNC_PRINTER})
    sup.predict(0, "a", {"n": 50})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done", msgs[-1]
    seq: list[str] = []
    for m in msgs[:-1]:
        if m["type"] == "log":
            seq.extend(m["data"].splitlines())
        else:
            seq.append(f"output {m['output']}")
    assert seq == [x for i in range(50) for x in (f"before {i}", f"thread {i}", f"output {i}")]
    assert logs(msgs).count("\n") == 100
