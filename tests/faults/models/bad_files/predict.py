"""Names files the supervisor must not read as its outputs, the way model code writing to its own slot
socket could (the SDK itself refuses them): a FIFO, /dev/zero, a link out of the output directory, a
file outside it; or records a metric whose name nests 100,000 levels. Used by
tests/faults/test_bound_files.py only.
"""

from __future__ import annotations

import gc
import json
import os
import pathlib
import struct

from cog import BasePredictor, Input, Path


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
    """The running prediction's output directory, as the worker named it (found the way stray model
    code could)."""
    for obj in gc.get_objects():
        if type(obj).__name__ == "Prediction" and isinstance(getattr(obj, "output_dir", None), str):
            os.makedirs(obj.output_dir, exist_ok=True)
            return obj.output_dir
    raise RuntimeError("no running Prediction in this process")


def _file_output(path: str) -> None:
    _slot_send({"type": "file_output", "filename": path, "kind": "file"})


class Predictor(BasePredictor):
    def predict(
        self,
        mode: str = Input(description="what to name", default="ok"),
        dir: str = Input(description="a directory outside the server's runtime directory", default=""),
        megabytes: int = Input(description="size of the big_file output", default=1),
    ) -> str:
        if mode == "ok":
            return "ok"
        if mode == "fifo":
            fifo = os.path.join(_output_dir(), "out.fifo")
            os.mkfifo(fifo)
            _file_output(fifo)
            return "sent"
        if mode == "dev_zero":
            _file_output("/dev/zero")
            return "sent"
        if mode == "symlink_outside":
            secret = os.path.join(dir, "secret.txt")
            pathlib.Path(secret).write_text("not for clients")
            link = os.path.join(_output_dir(), "leak.txt")
            os.symlink(secret, link)
            _file_output(link)
            return "sent"
        if mode == "file_outside":
            secret = os.path.join(dir, "secret.txt")
            pathlib.Path(secret).write_text("not for clients")
            _file_output(secret)
            return "sent"
        if mode == "deep_metric":
            _slot_send({"type": "metric", "name": ".".join(["a"] * 100_000), "value": 1, "mode": "replace"})
            return "ok"
        if mode == "big_file":
            out = os.path.join(dir, "big.bin")
            with open(out, "wb") as f:
                f.write(b"\0" * (megabytes * 1024 * 1024))
            return Path(out)  # type: ignore[return-value]
        raise ValueError(f"unknown mode {mode!r}")
