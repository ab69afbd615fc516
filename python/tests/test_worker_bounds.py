"""Black-box worker tests of what bounds a prediction's messages: outputs too deep for the supervisor's
parser fail the prediction (the slot and the worker go on), and printed lines are batched into few log
messages without losing their order or their promptness."""

from __future__ import annotations

import http.server
import os
import threading
import time
from typing import Any, Iterator

import pytest

from cogvisor_worker import protocol as p

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


def test_a_lone_print_and_a_flush_arrive_at_once(start: Any) -> None:
    sup = started(start, {"predict.py": PRINTER})
    sup.predict(0, "p", {"lines": 1, "wait": 5.0})
    t0 = time.monotonic()
    first = sup.next_slot(0)
    second = sup.next_slot(0)
    elapsed = time.monotonic() - t0
    # "line 0" had nothing before it: sent at once; the partial line follows on flush()
    assert first == {"type": "log", "source": "stdout", "data": "line 0\n"}, first
    assert second == {"type": "log", "source": "stdout", "data": "no newline yet"}, second
    assert elapsed < 2.0, elapsed  # well before the 5 s sleep ends
    assert sup.next_slot(0)["type"] == "output"  # type: ignore[index]


CRASHER = """
import os
from cog import BasePredictor

class Predictor(BasePredictor):
    def predict(self, flush: bool) -> str:
        for i in range(1000):
            print(f"busy {i}")
        print("last words", flush=flush)
        if not flush:
            import time
            time.sleep(0.2)  # a lone line after a pause goes at once
            print("after a pause")
        os._exit(3)
"""


@pytest.mark.parametrize("flush", [True, False])
def test_the_last_lines_before_a_crash_are_sent(start: Any, flush: bool) -> None:
    sup = started(start, {"predict.py": CRASHER})
    sup.predict(0, "c", {"flush": flush})
    assert sup.wait_exit() == 3
    got = ""
    while True:
        msg = sup.next_slot(0, timeout=5)
        if msg is None:
            break
        got += msg.get("data", "")
    assert ("last words\n" if flush else "after a pause\n") in got, got[-200:]


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


class Trickle(http.server.BaseHTTPRequestHandler):
    """Sends a body of 1000 bytes one byte every 0.2 s (never stalls long enough to time out)."""

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(150):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:  # the worker went away
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/weights.bin"
    srv.shutdown()
    srv.server_close()


PATH_INPUT = """
from cog import BasePredictor, Path

class Predictor(BasePredictor):
    def predict(self, p: Path) -> str:
        return p.read_text()
"""


@pytest.mark.parametrize("source", [PATH_INPUT, PATH_INPUT.replace("    def predict(", "    async def predict(")],
                         ids=["sync", "async"])
def test_cancel_stops_an_input_download_and_the_slot_goes_on(start: Any, trickle: str, source: str) -> None:
    sup = started(start, {"predict.py": source})
    root = os.path.join(sup.runtime_dir, "inputs")
    sup.predict(0, "dl", {"p": trickle})
    deadline = time.monotonic() + 10
    while not (os.path.isdir(root) and any(os.listdir(os.path.join(root, d)) for d in os.listdir(root))):
        assert time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    (pred_dir,) = os.listdir(root)
    assert pred_dir.startswith("1-"), pred_dir  # named after the worker's generation
    cancelled_at = time.monotonic()
    sup.send(p.cancel(0, "dl"))
    msgs = sup.until_terminal(0, timeout=10)
    assert msgs[-1] == {"type": "cancelled", "id": "dl"}, msgs[-1]
    assert time.monotonic() - cancelled_at < 1.5
    assert os.listdir(root) == []  # the partial download is gone
    sup.predict(0, "next", {"p": "data:text/plain,hello"})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done" and outputs(msgs) == ["hello"], msgs
    assert not [m for m in sup.control_seen if m["type"] == "failed"], sup.control_seen


def test_inputs_of_earlier_generations_are_removed_at_start(start: Any) -> None:
    sup = start({"predict.py": PATH_INPUT}, runtime_files={"inputs/0-left-by-a-killed-worker/tmpabc.bin": "x"})
    assert sup.ready()["type"] == "ready"
    assert os.listdir(os.path.join(sup.runtime_dir, "inputs")) == []


def test_setup_output_comes_before_the_milestones_and_the_failure_after_it(start: Any) -> None:
    sup = start(
        {
            "predict.py": """
            print("importing")
            class Predictor:
                def setup(self):
                    print("about to fail")
                    raise RuntimeError("boom")
                def predict(self) -> str:
                    return "x"
            """
        }
    )
    failed = sup.ready()
    assert failed["type"] == "setup_failed", failed
    seen = [
        m.get("data") or m.get("message") or m["type"]
        for m in sup.control_seen
        if m["type"] in ("log", "worker_log", "setup_failed")
    ]
    assert seen.index("importing\n") < seen.index("Running setup") < seen.index("about to fail\n")
    assert seen.index("about to fail\n") < seen.index("setup_failed")


FORKER = """
import os, sys
from cog import BasePredictor

class Predictor(BasePredictor):
    def predict(self, n: int) -> str:
        for i in range(n):
            print(f"parent {i}")
            pid = os.fork()
            if pid == 0:
                print(f"child {i}")  # then gone at once: nothing may wait in a batch
                os._exit(0)
            os.waitpid(pid, 0)
        return "ok"
"""


def test_prints_of_a_forked_child_are_not_lost(start: Any) -> None:
    sup = started(start, {"predict.py": FORKER})
    sup.predict(0, "f", {"n": 20})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done", msgs[-1]
    text = logs(msgs) + sup.control_logs()
    for i in range(20):
        assert f"parent {i}\n" in text and f"child {i}\n" in text, text


def test_output_a_setup_child_is_still_writing_comes_before_ready(start: Any) -> None:
    sup = start(
        {
            "predict.py": """
            import os, subprocess, sys, time
            CHILD = (
                "import time\\n"
                "for i in range(1, 21):\\n"
                "    print('setting up', i, flush=True)\\n"
                "    if i == 1: open('started', 'w').close()\\n"
                "    time.sleep(0.01)\\n"
            )
            class Predictor:
                def setup(self):
                    # a line every 10 ms: the pipe is empty between two of them
                    self.child = subprocess.Popen([sys.executable, "-c", CHILD])
                    while not os.path.exists("started"):  # it is writing by now
                        time.sleep(0.001)
                def predict(self) -> str:
                    return "x"
            """
        }
    )
    ready = sup.ready()
    assert ready["type"] == "ready", ready
    before_ready = sup.control_seen[: sup.control_seen.index(ready)]
    text = "".join(m["data"] for m in before_ready if m["type"] == "log")
    assert "setting up 20\n" in text, text
