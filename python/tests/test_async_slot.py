"""The async slot (an asyncio protocol on the worker's loop), driven by the fake supervisor."""

from __future__ import annotations

import os
import struct
from typing import Any

from cogvisor_worker import protocol as p

from harness import logs, outputs


def test_log_from_a_thread_arrives_before_the_terminal_message(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio, contextvars
            class Predictor:
                async def predict(self, n: int) -> str:
                    def work():
                        for i in range(n):
                            print(f"thread line {i}")
                    await asyncio.to_thread(work)
                    print("loop line")
                    return "ok"
            """
        },
        slots=2,
    )
    sup.predict(0, "t", {"n": 50})
    msgs = sup.until_terminal(0)
    assert logs(msgs) == "".join(f"thread line {i}\n" for i in range(50)) + "loop line\n"
    assert outputs(msgs) == ["ok"] and msgs[-1]["type"] == "done"


def test_outputs_keep_their_order_with_files_encoded_off_the_loop(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            from cog import Path
            class Predictor:
                async def predict(self):
                    yield "first"
                    with open("async-slot-test.txt", "w") as f:  # in the model dir, removed with it
                        f.write("file body")
                    yield Path("async-slot-test.txt").resolve()
                    yield {"nested": [1, 2]}
                    yield "x" * 100_000
                    yield "last"
            """
        },
        slots=2,
    )
    out_dir = sup.predict(1, "f")
    msgs = sup.until_terminal(1)
    kinds = [m["type"] for m in msgs]
    assert kinds == ["output", "file_output", "output", "output", "output", "done"]
    assert msgs[0]["output"] == "first" and msgs[4]["output"] == "last"
    assert msgs[2]["output"] == {"nested": [1, 2]} and msgs[3]["output"] == "x" * 100_000
    with open(os.path.join(out_dir, msgs[1]["filename"])) as f:
        assert f.read() == "file body"
    assert msgs[-1]["is_stream"] is True


def test_a_second_predict_on_a_busy_slot_poisons_it(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio
            class Predictor:
                async def predict(self, seconds: float) -> str:
                    await asyncio.sleep(seconds)
                    return "slept"
            """
        },
        slots=2,
    )
    sup.predict(0, "long", {"seconds": 30})
    sup.predict(0, "second", {"seconds": 0})
    failed = sup.expect_type("failed")
    assert failed["slot"] == 0 and "predict received while long is still running" in failed["error"]
    # the other slot still works
    sup.predict(1, "other", {"seconds": 0})
    assert outputs(sup.until_terminal(1)) == ["slept"]


def test_cancel_after_the_model_returned_does_not_interrupt_the_end(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio
            class Predictor:
                async def predict(self, n: int):
                    for i in range(n):
                        yield "y" * 1000
            """
        },
        slots=2,
    )
    sup.predict(0, "c", {"n": 200})
    sup.send(p.cancel(0, "c"))
    msgs = sup.until_terminal(0)
    # Whether the cancel lands during the generator or after it: exactly one terminal, nothing after it.
    assert msgs[-1]["type"] in ("cancelled", "done")
    assert all(m["type"] == "output" for m in msgs[:-1])
    sup.predict(0, "next", {"n": 1})
    assert sup.until_terminal(0)[-1]["type"] == "done"


def test_input_file_and_url_inputs_are_prepared_off_the_loop(start_ready: Any, tmp_path: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            import asyncio
            from cog import Path
            class Predictor:
                async def predict(self, text: str = "", file: Path = None) -> str:
                    body = file.read_text() if file is not None else ""
                    return f"{len(text)}:{body}"
            """
        },
        slots=2,
    )
    spill = p.write_spill(p.spill_dir(sup.runtime_dir), p.dumps({"text": "z" * 1000}).encode())
    sup.predict(0, "spilled", input_file=spill)
    assert outputs(sup.until_terminal(0)) == ["1000:"]
    assert not os.path.exists(spill)
    sup.predict(1, "data-url", {"file": "data:text/plain;base64,aGVsbG8="})
    assert outputs(sup.until_terminal(1)) == ["0:hello"]


def test_truncated_frame_at_close_names_the_cause(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            class Predictor:
                async def predict(self) -> str:
                    return "ok"
            """
        },
        slots=2,
    )
    sup.slots[1].sendall(struct.pack(">I", 100) + b"{")
    sup.slots[1].shutdown(1)  # SHUT_WR: the worker sees the end of the stream mid-frame
    failed = sup.expect_type("failed")
    assert failed["slot"] == 1 and "stream ended in the middle of a frame" in failed["error"]


def test_a_frame_that_is_not_utf8_poisons_the_slot_and_a_split_frame_is_read_whole(start_ready: Any) -> None:
    sup = start_ready(
        {
            "predict.py": """
            class Predictor:
                async def predict(self, text: str) -> str:
                    return text[::-1]
            """
        },
        slots=2,
    )
    # A frame written in pieces (header, then the payload byte by byte) is one message.
    out_dir = os.path.join(sup.runtime_dir, "outputs", "split")
    frame = p.encode_frame(p.predict("split", out_dir, input={"text": "héllo"}, context={}))
    sup.slots[0].sendall(frame[:3])
    for i in range(3, len(frame)):
        sup.slots[0].sendall(frame[i : i + 1])
    assert outputs(sup.until_terminal(0)) == ["olléh"]
    sup.slots[1].sendall(struct.pack(">I", 4) + b'"\xff"x')
    failed = sup.expect_type("failed")
    assert failed["slot"] == 1 and "malformed frame of 4 bytes" in failed["error"], failed
