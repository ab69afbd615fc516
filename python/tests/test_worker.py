"""Black-box tests: a fake supervisor drives ``python3 -m cogvisor_worker`` over the real channels."""

from __future__ import annotations

import json
import os
import socket
import struct
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


ECHO = """
import os, subprocess, sys
from cog import BasePredictor, Input

class Predictor(BasePredictor):
    def setup(self):
        print("setting up")

    def predict(self, text: str = Input(default="world", description="who")) -> str:
        print("hello from print")
        os.write(1, b"hello from fd1\\n")
        subprocess.run(["echo", "hello from echo"], check=True)
        print("to stderr", file=sys.stderr)
        os.system("echo from-system >&2")
        return "hello " + text
"""


def test_ready_and_predict_with_logs(start: Any) -> None:
    sup = start({"predict.py": ECHO})
    ready = sup.ready()
    assert ready["type"] == "ready"
    assert ready["sdk_version"] == "0.23.1"
    assert ready["has_healthcheck"] is False
    # No .cog/openapi_schema.json: the schema is built from the signature.
    assert ready["schema"]["components"]["schemas"]["Input"]["properties"]["text"] == {
        "title": "Text",
        "type": "string",
        "default": "world",
        "description": "who",
        "x-order": 0,
    }
    assert list(ready)[:4] == ["type", "python_version", "sdk_version", "has_healthcheck"]
    assert "setting up\n" in sup.control_logs()

    sup.predict(0, "p1", {"text": "cog"})
    msgs = sup.until_terminal(0)
    out = logs(msgs, "stdout")
    for line in ("hello from print\n", "hello from fd1\n", "hello from echo\n"):
        assert line in out, msgs
    err = logs(msgs, "stderr")
    assert "to stderr\n" in err and "from-system\n" in err, msgs
    assert outputs(msgs) == ["hello cog"]
    done = msgs[-1]
    assert done["type"] == "done" and done["id"] == "p1" and done["is_stream"] is False
    assert isinstance(done["predict_time"], float) and done["predict_time"] >= 0
    assert sup.expect_type("idle") == {"type": "idle", "slot": 0}

    # defaults from Input() apply when the input is omitted
    sup.predict(0, "p2", {})
    msgs = sup.until_terminal(0)
    assert outputs(msgs) == ["hello world"]
    sup.expect_type("idle")


def test_schema_file_is_sent_in_ready(start: Any) -> None:
    schema = {"openapi": "3.0.2", "info": {"title": "Cog", "version": "0.1.0"}}
    sup = started(start, {"predict.py": ECHO, ".cog/openapi_schema.json": json.dumps(schema)})
    assert sup.control_seen[-1]["schema"] == schema


def test_generator_streams(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            from cog import BasePredictor
            class Predictor(BasePredictor):
                def predict(self, n: int) -> int:
                    for i in range(n):
                        print(f"step {i}")
                        yield i
            """
        },
    )
    sup.predict(0, "g", {"n": 3})
    msgs = sup.until_terminal(0)
    assert [m["type"] for m in msgs] == ["log", "output"] * 3 + ["done"]
    assert outputs(msgs) == [0, 1, 2]
    assert msgs[-1]["is_stream"] is True


def test_list_output_streams_and_function_predictor(start: Any) -> None:
    sup = started(
        start,
        {"predict.py": "def predict(x: int) -> list:\n    return [x, {'a': (1, 2)}, None]\n"},
        predictor_ref="predict.py:predict",
    )
    sup.predict(0, "l", {"x": 5})
    msgs = sup.until_terminal(0)
    assert outputs(msgs) == [5, {"a": [1, 2]}, None]
    assert msgs[-1]["is_stream"] is True


def test_none_output_and_runner_default(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            from cog import BaseRunner
            class Predictor:
                def predict(self) -> str:
                    return "wrong class"
            class Runner(BaseRunner):
                def run(self) -> None:
                    return None
            """
        },
        predictor_ref="predict.py",
    )
    sup.predict(0, "n")
    msgs = sup.until_terminal(0)
    assert outputs(msgs) == [None]
    assert msgs[-1]["is_stream"] is False


def test_exception_fails_the_prediction(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            class Predictor:
                def predict(self) -> str:
                    raise ValueError("bad input")
            """
        },
    )
    sup.predict(0, "f")
    msgs = sup.until_terminal(0)
    assert msgs[-1] == {"type": "failed", "id": "f", "error": "ValueError: bad input"}
    err = logs(msgs, "stderr")
    assert "Traceback (most recent call last)" in err and "ValueError: bad input" in err
    sup.expect_type("idle")
    # the worker survives
    sup.predict(0, "f2")
    assert sup.until_terminal(0)[-1]["type"] == "failed"


def test_import_error_is_setup_failed(start: Any) -> None:
    sup = start({"predict.py": "print('importing')\nraise RuntimeError('boom at import')\n"})
    msg = sup.ready()
    assert msg["type"] == "setup_failed"
    assert "Traceback (most recent call last)" in msg["error"]
    assert "RuntimeError: boom at import" in msg["error"]
    assert sup.wait_exit() == 1


def test_a_missing_predictor_name_is_setup_failed_with_a_clear_message(start: Any) -> None:
    sup = start({"predict.py": ECHO}, predictor_ref="predict.py:Nope")
    msg = sup.ready()
    assert msg == p.setup_failed(
        "cannot load predict.py:Nope: predict.py defines nothing named 'Nope' "
        "(AttributeError: module 'predict' has no attribute 'Nope')"
    )
    assert sup.wait_exit() == 1


def test_an_empty_predictor_name_is_looked_up_as_coglet_does(start: Any) -> None:
    sup = start({"predict.py": ECHO}, predictor_ref="predict.py:")
    msg = sup.ready()
    assert msg == p.setup_failed(
        "cannot load predict.py:: predict.py defines nothing named '' "
        "(AttributeError: module 'predict' has no attribute '')"
    )


@pytest.mark.parametrize(
    "files",
    [
        {"impl.py": ECHO, "predict.py": "from impl import *\n"},
        {"impl.py": ECHO, "predict.py": "import impl\nglobals().update({'Pred' + 'ictor': impl.Predictor})\n"},
        {"predict.py": f"exec({ECHO!r})\n"},
        {"impl.py": ECHO, "predict.py": "import impl\ndef __getattr__(name):\n    return getattr(impl, name)\n"},
    ],
    ids=["star_import", "globals_update", "exec", "module_getattr"],
)
def test_a_predictor_the_file_does_not_spell_out_is_found_by_the_import(start_ready: Any, files: Any) -> None:
    sup = start_ready(files)
    sup.predict(0, "x", {"text": "hi"})
    assert sup.until_terminal(0)[-1]["type"] == "done"


def test_setup_error_is_setup_failed(start: Any) -> None:
    sup = start(
        {
            "predict.py": """
            class Predictor:
                def setup(self, weights=None):
                    raise RuntimeError(f"boom in setup weights={weights}")
                def predict(self) -> str:
                    return "x"
            """
        },
        env={"COG_WEIGHTS": "w.bin"},
    )
    msg = sup.ready()
    assert msg["type"] == "setup_failed"
    assert "RuntimeError: boom in setup weights=w.bin" in msg["error"]
    assert sup.wait_exit() == 1


def test_run_and_predict_both_defined(start: Any) -> None:
    sup = start(
        {
            "predict.py": """
            class Predictor:
                def run(self): pass
                def predict(self): pass
            """
        }
    )
    msg = sup.ready()
    assert msg["type"] == "setup_failed"
    assert "predictor must define either run() or predict(), not both" in msg["error"]
    assert sup.wait_exit() == 1


def test_sync_predictor_with_two_slots_fails_setup(start: Any) -> None:
    sup = start({"predict.py": ECHO}, slots=2)
    msg = sup.ready()
    assert msg["type"] == "setup_failed"
    assert "COG_MAX_CONCURRENCY > 1 requires an async run() or predict() method (concurrency is 2)" in msg["error"]
    assert sup.wait_exit() == 1


def test_protocol_version_mismatch(start: Any) -> None:
    sup = start({"predict.py": ECHO}, protocol_version=2)
    msg = sup.expect_type("setup_failed")
    assert "2" in msg["error"] and "1" in msg["error"]
    assert sup.wait_exit() == 1


def test_first_frame_must_be_init() -> None:
    import subprocess
    import sys

    from harness import PYTHON_DIR

    proc = subprocess.run(
        [sys.executable, "-m", "cogvisor_worker"],
        input=p.encode_frame(p.shutdown()),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": PYTHON_DIR},
        timeout=30,
    )
    assert proc.returncode == 2
    msg = p.decode_payload(proc.stdout[4:])
    assert msg["type"] == "fatal" and "init" in msg["reason"]


def test_malformed_schema_refs_in_init_are_fatal() -> None:
    import subprocess
    import sys

    from harness import PYTHON_DIR

    init = p.init(1, 1, "predict.py:Predictor", "predict", "full", "/tmp", [], {"predict": "predict.py:Predictor"})
    init["schema_refs"]["train"] = 5
    proc = subprocess.run(
        [sys.executable, "-m", "cogvisor_worker"],
        input=p.encode_frame(init),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": PYTHON_DIR},
        timeout=30,
    )
    assert proc.returncode == 2
    msg = p.decode_payload(proc.stdout[4:])
    assert msg == {"type": "fatal", "reason": "malformed init message: schema_refs is not an object of predict/train strings"}


def test_spilled_input_is_read_and_deleted(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            class Predictor:
                def predict(self, text: str) -> int:
                    return len(text)
            """
        },
    )
    spill = p.write_spill(os.path.join(sup.runtime_dir, "spill"), json.dumps({"text": "x" * 7_000_000}).encode())
    sup.predict(0, "s", input_file=spill)
    msgs = sup.until_terminal(0)
    assert outputs(msgs) == [7_000_000]
    assert not os.path.exists(spill)


def test_oversized_output_spills(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            class Predictor:
                def predict(self) -> str:
                    return "é" * 3_500_000
            """
        },
    )
    sup.predict(0, "big")
    msgs = sup.until_terminal(0)
    files = [m for m in msgs if m["type"] == "file_output"]
    assert len(files) == 1 and files[0]["kind"] == "oversized" and "mime_type" not in files[0]
    path = files[0]["filename"]
    assert os.path.dirname(path) == os.path.join(sup.runtime_dir, "spill")
    assert os.path.basename(path).startswith("spill-")
    assert p.take_spill(os.path.join(sup.runtime_dir, "spill"), path) == "é" * 3_500_000
    assert msgs[-1]["type"] == "done"


def test_path_output_is_a_file_output(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import tempfile
            from cog import BasePredictor, Path
            class Predictor(BasePredictor):
                def predict(self) -> Path:
                    d = tempfile.mkdtemp()
                    with open(d + "/out.png", "wb") as f:
                        f.write(b"png")
                    return Path(d + "/out.png")
            """
        },
    )
    out_dir = sup.predict(0, "file")
    msgs = sup.until_terminal(0)
    f = [m for m in msgs if m["type"] == "file_output"][0]
    assert f["kind"] == "file" and f["mime_type"] == "image/png"
    assert os.path.dirname(f["filename"]) == out_dir
    with open(f["filename"], "rb") as fh:
        assert fh.read() == b"png"


def test_cancel_sync_prediction(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import time
            class Predictor:
                def predict(self) -> str:
                    print("started", flush=True)
                    while True:
                        time.sleep(0.05)
            """
        },
    )
    sup.predict(0, "c")
    first = sup.next_slot(0)
    assert first == {"type": "log", "source": "stdout", "data": "started\n"}
    sup.send(p.cancel(0, "c"))
    assert sup.expect_type("cancelled") == {"type": "cancelled", "slot": 0, "id": "c"}
    msgs = sup.until_terminal(0)
    assert msgs[-1] == {"type": "cancelled", "id": "c"}
    sup.expect_type("idle")
    # a cancel for a prediction that is not running is ignored; the slot still works
    sup.send(p.cancel(0, "c"))
    sup.predict(0, "c2")
    assert sup.next_slot(0)["data"] == "started\n"  # type: ignore[index]
    sup.send(p.cancel(0, "c2"))
    assert sup.until_terminal(0)[-1] == {"type": "cancelled", "id": "c2"}


@pytest.mark.parametrize("kind", ["def", "async def"])
def test_a_cancel_that_overtakes_its_predict_message_cancels_that_prediction(start: Any, kind: str) -> None:
    # The supervisor sends the cancel on the control channel and the prediction on the slot's socket:
    # the cancel can arrive first. The prediction it names then ends cancelled without running.
    sup = started(
        start,
        {
            "predict.py": f"""
            class Predictor:
                {kind} predict(self, n: int = 0) -> str:
                    print("ran", n, flush=True)
                    return "x"
            """
        },
    )
    sup.send(p.cancel(0, "early"))
    assert sup.expect_type("cancelled") == {"type": "cancelled", "slot": 0, "id": "early"}
    sup.predict(0, "early")
    assert sup.until_terminal(0) == [{"type": "cancelled", "id": "early"}]
    # Only the next prediction on the slot can be the one meant: another id runs as usual.
    sup.send(p.cancel(0, "stale"))
    sup.predict(0, "other")
    assert sup.until_terminal(0)[-1]["type"] == "done"


HEALTH = """
import os
class Predictor:
    def setup(self):
        self.calls = 0
    def healthcheck(self):
        self.calls += 1
        if self.calls == 1:
            return True
        if self.calls == 2:
            return False
        raise RuntimeError("sick")
    def predict(self) -> str:
        return "x"
"""


def test_healthcheck(start: Any) -> None:
    sup = started(start, {"predict.py": HEALTH})
    assert sup.control_seen[-1]["has_healthcheck"] is True
    sup.send(p.healthcheck("h1"))
    assert sup.expect_type("healthcheck_result") == {"type": "healthcheck_result", "id": "h1", "status": "healthy"}
    sup.send(p.healthcheck("h2"))
    assert sup.expect_type("healthcheck_result") == p.healthcheck_result(
        "h2", "unhealthy", "user-defined healthcheck returned False"
    )
    sup.send(p.healthcheck("h3"))
    assert sup.expect_type("healthcheck_result") == p.healthcheck_result("h3", "unhealthy", "RuntimeError: sick")


def test_healthcheck_not_defined_is_healthy(start: Any) -> None:
    sup = started(start, {"predict.py": ECHO})
    sup.send(p.healthcheck("h"))
    assert sup.expect_type("healthcheck_result") == p.healthcheck_result("h", "healthy")


def test_subprocess_does_not_inherit_control_fds(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import subprocess, sys
            class Predictor:
                def predict(self) -> list:
                    code = "import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"
                    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, close_fds=False)
                    return eval(out.stdout)
            """
        },
    )
    sup.predict(0, "fd")
    msgs = sup.until_terminal(0)
    # 0-2 plus the fd os.listdir itself opens; no control pipe, saved stderr or slot socket
    assert outputs(msgs) == [0, 1, 2, 3]


def test_shutdown(start: Any) -> None:
    sup = started(start, {"predict.py": ECHO})
    sup.send(p.shutdown())
    assert sup.expect_type("shutting_down") == {"type": "shutting_down"}
    assert sup.wait_exit() == 0


def test_control_eof_exits_zero(start: Any) -> None:
    sup = started(start, {"predict.py": ECHO})
    assert sup.proc.stdin is not None
    sup.proc.stdin.close()
    assert sup.wait_exit() == 0


def test_malformed_control_frame_is_fatal(start: Any) -> None:
    sup = started(start, {"predict.py": ECHO})
    assert sup.proc.stdin is not None
    sup.proc.stdin.write(struct.pack(">I", p.MAX_FRAME_LEN + 1))
    sup.proc.stdin.flush()
    msg = sup.expect_type("fatal")
    assert "exceeds" in msg["reason"]
    assert sup.wait_exit() == 2
    deadline = time.monotonic() + 30
    while b"exceeds" not in sup.stderr and time.monotonic() < deadline:
        time.sleep(0.01)
    assert b"exceeds" in sup.stderr  # diagnostics go to the original stderr


ASYNC = """
import asyncio
from cog import BasePredictor
RUNNING = 0
class Predictor(BasePredictor):
    async def setup(self):
        self.loop = asyncio.get_running_loop()
    async def predict(self, name: str) -> str:
        global RUNNING
        assert asyncio.get_running_loop() is self.loop
        RUNNING += 1
        print(f"start {name}")
        for _ in range(2000):
            if RUNNING >= 2:
                break
            await asyncio.sleep(0.01)
        together = RUNNING >= 2
        await asyncio.sleep(0.05)
        RUNNING -= 1
        return f"{name} together={together}"
"""


def test_async_predictor_runs_slots_concurrently(start: Any) -> None:
    sup = started(start, {"predict.py": ASYNC}, slots=2)
    sup.predict(0, "a", {"name": "a"})
    sup.predict(1, "b", {"name": "b"})
    a, b = sup.until_terminal(0), sup.until_terminal(1)
    assert outputs(a) == ["a together=True"] and logs(a) == "start a\n"
    assert outputs(b) == ["b together=True"] and logs(b) == "start b\n"
    idles = {sup.expect_type("idle")["slot"], sup.expect_type("idle")["slot"]}
    assert idles == {0, 1}


def test_async_generator_and_cancel(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import asyncio
            class Predictor:
                async def predict(self, n: int):
                    for i in range(n):
                        yield i
                    while True:
                        await asyncio.sleep(0.05)
            """
        },
        slots=2,
    )
    sup.predict(1, "ag", {"n": 2})
    assert sup.next_slot(1) == {"type": "output", "output": 0}
    assert sup.next_slot(1) == {"type": "output", "output": 1}
    sup.send(p.cancel(1, "ag"))
    assert sup.expect_type("cancelled") == {"type": "cancelled", "slot": 1, "id": "ag"}
    assert sup.until_terminal(1) == [{"type": "cancelled", "id": "ag"}]
    assert sup.expect_type("idle") == {"type": "idle", "slot": 1}


def test_metrics_and_recycle(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import cog
            class Predictor(cog.BasePredictor):
                def predict(self) -> str:
                    self.record_metric("tokens", 3, mode="incr")
                    cog.current_scope().record_metric("score", 0.5)
                    cog.recycle_worker("leak", rerun_setup=True)
                    return "ok"
            """
        },
    )
    sup.predict(0, "m")
    msgs = sup.until_terminal(0)
    assert [m for m in msgs if m["type"] == "metric"] == [
        p.metric("tokens", 3, "increment"),
        p.metric("score", 0.5, "replace"),
    ]
    # From a prediction the request travels on its slot, ahead of the terminal message.
    kinds = [m["type"] for m in msgs]
    assert kinds.index("recycle_requested") < kinds.index("done"), kinds
    assert p.slot_recycle_requested("leak", True) in msgs


def test_recycle_requested_outside_a_prediction_goes_on_the_control_channel(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import threading, cog
            class Predictor(cog.BasePredictor):
                def setup(self):
                    threading.Timer(0.05, lambda: cog.recycle_worker("from a timer")).start()
                def predict(self) -> str:
                    return "ok"
            """
        },
    )
    assert sup.expect_type("recycle_requested") == p.recycle_requested("from a timer", False)


def test_train_mode_with_recycle_setup(start: Any) -> None:
    sup = started(
        start,
        {
            "train.py": """
            class Trainer:
                def setup(self):
                    self.how = "full"
                def recycle_setup(self):
                    self.how = "recycle"
                def predict(self) -> str:
                    return "not me"
                def train(self, steps: int) -> str:
                    return f"{self.how} {steps}"
            """
        },
        predictor_ref="train.py:Trainer",
        mode="train",
        setup="recycle",
    )
    sup.predict(0, "t", {"steps": 4})
    assert outputs(sup.until_terminal(0)) == ["recycle 4"]


def test_broken_slot_frame_poisons_only_that_slot(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            class Predictor:
                async def predict(self, name: str) -> str:
                    return name
            """
        },
        slots=2,
    )
    sup.slots[0].sendall(struct.pack(">I", 5) + b"{nope")
    msg = sup.expect_type("failed")
    assert msg["slot"] == 0 and "malformed" in msg["error"]
    sup.predict(1, "b", {"name": "b"})
    assert outputs(sup.until_terminal(1)) == ["b"]
    # an oversized length on slot 1 poisons it as well, naming the cause
    sup.slots[1].sendall(struct.pack(">I", p.MAX_FRAME_LEN + 1))
    msg = sup.expect_type("failed")
    assert msg["slot"] == 1 and "exceeds" in msg["error"]


def test_slot_socket_closed_poisons_the_slot(start: Any) -> None:
    sup = started(start, {"predict.py": ECHO})
    sup.slots[0].shutdown(socket.SHUT_RDWR)  # close() alone would not wake the harness's blocked recv
    msg = sup.expect_type("failed")
    assert msg == p.control_failed(0, "slot socket closed by the supervisor")


def test_healthcheck_timeout(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            import time
            class Predictor:
                def healthcheck(self):
                    time.sleep(30)
                def predict(self) -> str:
                    return "still serving"
            """
        },
    )
    sup.send(p.healthcheck("slow"))
    # the control loop is not blocked while the healthcheck runs
    sup.predict(0, "during")
    assert outputs(sup.until_terminal(0)) == ["still serving"]
    assert sup.expect_type("healthcheck_result", timeout=30) == p.healthcheck_result(
        "slow", "unhealthy", "user-defined healthcheck timed out after 5.0 seconds"
    )


def test_async_healthcheck(start: Any) -> None:
    sup = started(
        start,
        {
            "predict.py": """
            class Predictor:
                async def healthcheck(self):
                    raise RuntimeError("async sick")
                async def predict(self) -> str:
                    return "x"
            """
        },
    )
    sup.send(p.healthcheck("ah"))
    assert sup.expect_type("healthcheck_result") == p.healthcheck_result("ah", "unhealthy", "RuntimeError: async sick")
