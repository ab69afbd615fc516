"""Everything a client and a model can throw at the server at once, for
tests/faults/test_bound_combined.py: a streaming prediction that prints its input (as
stream_printer), and file outputs naming a FIFO or /dev/zero written past the SDK (as bad_files)."""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
import time
from typing import Iterator

from cog import BasePredictor, Input, streaming


def _slot_send(message: dict) -> None:
    """One frame on this prediction's slot socket, past the SDK's checks."""
    payload = json.dumps(message).encode()
    for obj in gc.get_objects():
        if type(obj).__name__ == "SocketChannel":
            with obj.lock:
                obj.sock.sendall(struct.pack(">I", len(payload)) + payload)
            return
    raise RuntimeError("no SocketChannel in this process")


def _output_dir() -> str:
    """The running prediction's output directory: the newest (directories are numbered in order)
    of the predictions still in memory."""
    dirs = [
        obj.output_dir
        for obj in gc.get_objects()
        if type(obj).__name__ == "Prediction" and isinstance(getattr(obj, "output_dir", None), str)
    ]
    if not dirs:
        raise RuntimeError("no running Prediction in this process")
    newest = max(dirs, key=lambda d: int(os.path.basename(d).rpartition("-")[2] or -1))
    os.makedirs(newest, exist_ok=True)
    return newest


class Predictor(BasePredictor):
    @streaming
    def predict(
        self,
        mode: str = Input(description="print, fifo or dev_zero", default="print"),
        text: str = Input(description="what each print writes", default="x"),
        prints: int = Input(description="how many times to print it", default=1),
        wait: float = Input(description="seconds to wait before printing", default=0.0),
    ) -> Iterator[str]:
        if mode == "fifo":
            fifo = os.path.join(_output_dir(), "out.fifo")
            os.mkfifo(fifo)
            _slot_send({"type": "file_output", "filename": fifo, "kind": "file"})
            yield "sent"
            return
        if mode == "dev_zero":
            _slot_send({"type": "file_output", "filename": "/dev/zero", "kind": "file"})
            yield "sent"
            return
        time.sleep(wait)
        for i in range(prints):
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            yield f"item-{i}"
        yield "done"
