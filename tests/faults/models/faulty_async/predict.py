"""An async predictor with two slots that can break the slot it runs in: a malformed frame or a
9 MiB frame header written to its own slot socket. Only the fault-injection suite uses it."""

from __future__ import annotations

import asyncio
import gc
import os
import struct

from cog import BasePredictor, Input

OVERSIZED_HEADER = struct.pack(">I", 9 * 1024 * 1024)
MALFORMED_FRAME = struct.pack(">I", 9) + b"{not json"


def _own_slot_transport():
    """The asyncio transport of the slot running the current prediction (found the way stray model
    code could: the worker's log router knows the prediction of the current context)."""
    for obj in gc.get_objects():
        if type(obj).__name__ == "LogRouter":
            prediction = obj.current.get()
            if prediction is not None:
                return prediction.slot.transport
    raise RuntimeError("no running prediction found")


class Predictor(BasePredictor):
    async def predict(
        self,
        mode: str = Input(description="ok | sleep | malformed_slot_frame | oversized_slot_frame", default="ok"),
        seconds: float = Input(description="how long to sleep", default=1.0),
    ) -> dict:
        print(f"faulty_async: mode={mode}", flush=True)
        if mode in ("malformed_slot_frame", "oversized_slot_frame"):
            # On the event loop, like the worker's own writes, so the bytes cannot split another frame.
            _own_slot_transport().write(MALFORMED_FRAME if mode == "malformed_slot_frame" else OVERSIZED_HEADER)
        if mode != "ok":
            await asyncio.sleep(seconds)
        return {"pid": os.getpid(), "generation": int(os.environ.get("COGVISOR_GENERATION", "0"))}
