"""The SDK inside the real worker: inputs, outputs, metrics, context, weights, train mode, logs."""

import base64
import http.server
import os
import threading
from typing import Any, Iterator

import pytest

from cogvisor_worker import protocol as p

from harness import Supervisor, logs, outputs


RELEASE = threading.Event()
REQUESTED = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/hang.txt":
            REQUESTED.set()
            RELEASE.wait(30)
        if self.path == "/missing.txt":
            self.send_error(404, "File not found")
            return
        body = b"downloaded " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


FILES = """
import os
from typing import Optional
from cog import BasePredictor, Path, Secret, Input

class Predictor(BasePredictor):
    def predict(self, p: Path, ps: list[Path] = Input(default=None), key: Optional[Secret] = None,
                plain: str = "") -> dict:
        print("got", p.name)
        return {
            "text": p.read_text(),
            "more": [q.read_text() for q in ps or []],
            "is_path": isinstance(p, Path),
            "key": key.get_secret_value() if key else None,
            "key_type": type(key).__name__,
            "plain": plain,
            "where": str(p),
        }
"""


def test_url_inputs_are_downloaded_and_deleted_after(start_ready: Any, server: str) -> None:
    sup = start_ready({"predict.py": FILES})
    data = "data:text/plain;base64," + base64.b64encode(b"inline").decode()
    sup.predict(0, "f", {"p": f"{server}/a.txt", "ps": [data, f"{server}/b.txt"], "key": "s3", "plain": f"{server}/x"})
    msgs = sup.until_terminal(0)
    assert msgs[-1]["type"] == "done", msgs
    out = outputs(msgs)[0]
    assert out["text"] == "downloaded /a.txt" and out["more"] == ["inline", "downloaded /b.txt"]
    assert out["is_path"] and out["key"] == "s3" and out["key_type"] == "Secret"
    assert out["plain"] == f"{server}/x", "str inputs are never downloaded"
    assert "got tmp" in logs(msgs)
    assert not os.path.exists(out["where"]), "downloaded inputs are deleted when the prediction ends"


def test_undownloadable_url_fails_with_url_and_status(start_ready: Any, server: str) -> None:
    sup = start_ready({"predict.py": FILES})
    url = f"{server}/missing.txt"
    sup.predict(0, "m", {"p": url})
    msgs = sup.until_terminal(0)
    assert msgs[-1] == p.slot_failed("m", f"Input validation error: 404 Client Error: File not found for url: {url}")
    sup.predict(0, "ok", {"p": f"{server}/a.txt"})
    assert sup.until_terminal(0)[-1]["type"] == "done", "the worker lives on"


def test_cancel_during_input_download_ends_cancelled_without_running_the_model(start_ready: Any, server: str) -> None:
    sup = start_ready({"predict.py": FILES})
    RELEASE.clear()
    REQUESTED.clear()
    sup.predict(0, "dl", {"p": f"{server}/hang.txt"})
    assert REQUESTED.wait(30), "the download started"
    sup.send(p.cancel(0, "dl"))
    assert sup.expect_type("cancelled") == {"type": "cancelled", "slot": 0, "id": "dl"}
    RELEASE.set()
    assert sup.until_terminal(0) == [p.slot_cancelled("dl")], "the model never ran (it would have printed)"


def test_unencodable_output_fails_naming_the_type_and_worker_lives_on(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            class Thing:
                pass
            class Predictor:
                def predict(self, bad: bool = True):
                    return Thing() if bad else "fine"
            """
        }
    )
    sup.predict(0, "bad", {"bad": True})
    msgs = sup.until_terminal(0)
    assert msgs[-1] == p.slot_failed("bad", "TypeError: Object of type Thing is not JSON serializable")
    sup.predict(0, "good", {"bad": False})
    assert outputs(sup.until_terminal(0)) == ["fine"]


def test_nested_files_and_file_objects(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import io, tempfile
            from cog import BaseModel, Path
            class Out(BaseModel):
                file: Path
                text: str
            class Predictor:
                def predict(self) -> list:
                    d = tempfile.mkdtemp()
                    with open(d + "/a.txt", "w") as f:
                        f.write("model file")
                    buf = io.BytesIO(b"raw")
                    buf.name = "x.png"
                    return [Out(file=Path(d + "/a.txt"), text="hi"), buf]
            """
        }
    )
    sup.predict(0, "n")
    msgs = sup.until_terminal(0)
    assert msgs[0] == p.output({"file": "data:text/plain;base64,bW9kZWwgZmlsZQ==", "text": "hi"})
    assert msgs[1]["type"] == "file_output" and msgs[1]["mime_type"] == "image/png"
    assert msgs[-1]["type"] == "done" and msgs[-1]["is_stream"] is True


def test_metrics_scope_and_context(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import cog
            class Predictor(cog.BasePredictor):
                def predict(self, bad: bool = False) -> dict:
                    scope = cog.current_scope()
                    scope.metrics["tokens"] = 1
                    scope.metrics.record("tokens", 2, "incr")
                    scope.metrics.record("steps", "a", "append")
                    del scope.metrics["steps"]
                    cog.record_metric("timing.pre", 0.5)
                    if bad:
                        scope.metrics["tokens"] = "many"
                    return scope.context
            """
        }
    )
    sup.predict(0, "c", context={"a": "1", "b": "x"})
    msgs = sup.until_terminal(0)
    assert [m for m in msgs if m["type"] == "metric"] == [
        p.metric("tokens", 1, "replace"),
        p.metric("tokens", 2, "increment"),
        p.metric("steps", "a", "append"),
        p.metric("steps", None, "replace"),
        p.metric("timing.pre", 0.5, "replace"),
    ]
    assert outputs(msgs) == [{"a": "1", "b": "x"}]
    sup.predict(0, "bad", {"bad": True})
    msgs = sup.until_terminal(0)
    assert msgs[-1] == p.slot_failed(
        "bad", "TypeError: Metric 'tokens' has type int, cannot set to str without deleting first"
    )
    assert [m for m in msgs if m["type"] == "metric"][0] == p.metric("tokens", 1, "replace"), "metrics per prediction"


def test_setup_weights_from_cog_weights(start_ready: Any) -> None:
    src = {
        "predict.py": """
        class Predictor:
            def setup(self, weights=None):
                self.w = weights
            def predict(self) -> str:
                return repr(self.w)
        """
    }
    sup = start_ready(src, env={"COG_WEIGHTS": "https://weights/x.tar"})
    sup.predict(0, "w")
    assert outputs(sup.until_terminal(0)) == ["'https://weights/x.tar'"]
    env = {k: v for k, v in os.environ.items() if k != "COG_WEIGHTS"}
    os.environ.pop("COG_WEIGHTS", None)
    sup = start_ready(src, env=env)
    sup.predict(0, "w")
    assert outputs(sup.until_terminal(0)) == ["None"]


def test_train_mode_sends_a_training_schema(start_ready: Any) -> None:
    sup = Supervisor(
        {
            "predict.py": """
            from cog import BaseRunner, Input, Path
            class Runner(BaseRunner):
                def run(self, x: int) -> int:
                    return x
                def train(self, steps: int = Input(default=3, ge=1)) -> str:
                    return f"trained {steps}"
            """
        },
        predictor_ref="predict.py:Runner",
        mode="train",
    )
    try:
        ready = sup.ready()
        schemas = ready["schema"]["components"]["schemas"]
        assert schemas["TrainingInput"]["properties"]["steps"]["minimum"] == 1
        assert schemas["TrainingOutput"] == {"title": "Output", "type": "string"}, "titled as cog build does"
        assert "Input" not in schemas, "no schema_refs in init: the served function alone"
        sup.predict(0, "t")
        assert outputs(sup.until_terminal(0)) == ["trained 3"]
    finally:
        sup.close()


MERGED_SRC = {
    "predict.py": """
    from cog import BaseRunner, Input
    class Runner(BaseRunner):
        def __init__(self):
            print("constructed")
        def run(self, x: int) -> int:
            return x
    """,
    "train.py": """
    from cog import Input
    print("train.py imported")
    def train(steps: int = Input(default=3, ge=1)) -> str:
        return f"trained {steps}"
    """,
}
BOTH = {"predict": "predict.py:Runner", "train": "train.py:train"}


@pytest.mark.parametrize("mode", ["predict", "train"])
def test_schema_refs_with_both_modes_give_one_merged_document(mode: str) -> None:
    ref = BOTH[mode]
    sup = Supervisor(MERGED_SRC, predictor_ref=ref, mode=mode, schema_refs=BOTH)
    try:
        ready = sup.ready()
        assert ready["type"] == "ready", ready
        doc = ready["schema"]
        schemas = doc["components"]["schemas"]
        assert schemas["Input"]["properties"]["x"]["type"] == "integer"
        assert schemas["TrainingInput"]["properties"]["steps"]["default"] == 3
        assert {"/predictions", "/trainings", "/trainings/{training_id}/cancel"} <= set(doc["paths"])
        logs = "".join(m.get("data", "") for m in sup.control_seen if m["type"] == "log")
        # The other mode's function is read, not run: its class is never constructed.
        assert ("constructed" in logs) == (mode == "predict"), logs
    finally:
        sup.close()


def test_an_unreadable_other_mode_leaves_it_out_with_a_warning() -> None:
    refs = {"predict": "predict.py:Runner", "train": "missing.py:train"}
    sup = Supervisor(MERGED_SRC, predictor_ref="predict.py:Runner", schema_refs=refs)
    try:
        ready = sup.ready()
        assert ready["type"] == "ready", ready
        assert "TrainingInput" not in ready["schema"]["components"]["schemas"]
        warnings = [m["message"] for m in sup.control_seen if m["type"] == "worker_log"]
        assert any("train part of the OpenAPI schema is left out: missing.py:train" in w for w in warnings), warnings
    finally:
        sup.close()


def test_unsupported_input_type_fails_setup_naming_it() -> None:
    sup = Supervisor(
        {
            "predict.py": """
            class Weird:
                pass
            class Predictor:
                def predict(self, w: Weird) -> str:
                    return ""
            """
        }
    )
    try:
        msg = sup.ready()
        assert msg["type"] == "setup_failed"
        assert "input 'w': unsupported type Weird" in msg["error"]
    finally:
        sup.close()


def test_schema_file_wins_over_the_signature(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": "class Predictor:\n    def predict(self, x: int) -> int:\n        return x\n",
            ".cog/openapi_schema.json": '{"openapi": "3.0.2", "components": {"schemas": {"Input": {"type": "object"}}}}',
        }
    )
    assert sup.control_seen[-1]["schema"] == {"openapi": "3.0.2", "components": {"schemas": {"Input": {"type": "object"}}}}


def test_partial_line_is_flushed_at_the_end_of_its_prediction(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            class Predictor:
                def predict(self, s: str) -> str:
                    print(s, end="")
                    return s
            """
        }
    )
    sup.predict(0, "one", {"s": "no-newline"})
    assert logs(sup.until_terminal(0)) == "no-newline"
    sup.predict(0, "two", {"s": "line"})
    assert logs(sup.until_terminal(0)) == "line", "nothing leaks into the next prediction"


def test_failed_prediction_keeps_its_logs(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            class Predictor:
                def predict(self) -> str:
                    print("before the failure")
                    raise ValueError("nope")
            """
        }
    )
    sup.predict(0, "f")
    msgs = sup.until_terminal(0)
    assert msgs[-1] == p.slot_failed("f", "ValueError: nope")
    text = logs(msgs)
    assert "before the failure\n" in text and "Traceback" in text


def test_prints_from_concurrent_async_predictions_go_to_their_own(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio
            class Predictor:
                async def predict(self, name: str) -> str:
                    for i in range(20):
                        print(f"{name} {i}")
                        await asyncio.sleep(0.005)
                    return name
            """
        },
        slots=2,
    )
    sup.predict(0, "a", {"name": "a"})
    sup.predict(1, "b", {"name": "b"})
    a, b = sup.until_terminal(0), sup.until_terminal(1)
    assert logs(a) == "".join(f"a {i}\n" for i in range(20))
    assert logs(b) == "".join(f"b {i}\n" for i in range(20))


def test_cancel_async_prediction_is_cancelled(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio
            class Predictor:
                async def predict(self) -> str:
                    print("waiting")
                    await asyncio.sleep(60)
                    return "late"
            """
        }
    )
    sup.predict(0, "c")
    assert sup.next_slot(0) == p.slot_log("stdout", "waiting\n")
    sup.send(p.cancel(0, "c"))
    assert sup.until_terminal(0) == [p.slot_cancelled("c")]


def test_async_generator_items_are_sent_as_yielded(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio
            from cog import AsyncConcatenateIterator
            GATE = None
            class Predictor:
                async def predict(self, path: str) -> AsyncConcatenateIterator[str]:
                    import os
                    yield "first"
                    while not os.path.exists(path):
                        await asyncio.sleep(0.01)
                    yield "second"
            """
        }
    )
    gate = os.path.join(sup.root, "gate")
    sup.predict(0, "g", {"path": gate})
    assert sup.next_slot(0) == p.output("first"), "sent before the generator finishes"
    open(gate, "w").close()
    msgs = sup.until_terminal(0)
    assert outputs(msgs) == ["second"] and msgs[-1]["is_stream"] is True
