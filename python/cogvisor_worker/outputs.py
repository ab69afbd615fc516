"""Turning model outputs into slot messages: JSON values, file outputs and spill files."""

from __future__ import annotations

import dataclasses
import enum
import mimetypes
import os
import pathlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from . import protocol


def is_stream(value: Any) -> bool:
    """Whether a return value is a sequence of outputs (generator, iterator, list, tuple)."""
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, (str, bytes, bytearray, dict)):
        return False
    return isinstance(value, (Iterator, AsyncIterator))


def to_json(value: Any) -> Any:
    """A JSON-compatible copy of ``value``. Paths nested in containers become their path string."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, enum.Enum):
            return to_json(value.value)
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, dict):
        return {str(to_json(k)) if not isinstance(k, str) else k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    if isinstance(value, pathlib.PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    for name in ("model_dump", "dict"):
        dump = getattr(value, name, None)
        if callable(dump) and not isinstance(value, type):
            return to_json(dump())
    # numpy scalars and arrays, without importing numpy
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return to_json(tolist())
    item = getattr(value, "item", None)
    if callable(item):
        return to_json(item())
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _keep_file(path: pathlib.PurePath, output_dir: str) -> str:
    """The absolute path of an output file that lives in ``output_dir`` (copied there when outside)."""
    src = os.path.abspath(str(path))
    if not os.path.isfile(src):
        raise FileNotFoundError(f"output file {src} does not exist")
    out = os.path.abspath(output_dir)
    real_out = os.path.realpath(out)
    if os.path.commonpath([os.path.realpath(src), real_out]) == real_out:
        return src
    os.makedirs(out, exist_ok=True)
    dest = os.path.join(out, os.path.basename(src))
    if os.path.exists(dest):
        dest = os.path.join(out, f"{uuid.uuid4().hex[:8]}-{os.path.basename(src)}")
    shutil.copy2(src, dest)
    return dest


def output_message(value: Any, output_dir: str, runtime_dir: str) -> protocol.Message:
    """The slot message carrying one output value: ``output``, or ``file_output`` (file or spill)."""
    if isinstance(value, pathlib.PurePath):
        filename = _keep_file(value, output_dir)
        mime, _ = mimetypes.guess_type(filename)
        return protocol.file_output(filename, "file", mime)
    encoded = to_json(value)
    payload = protocol.dumps(encoded).encode("utf-8")
    if len(payload) > protocol.MAX_INLINE_PAYLOAD:
        path = protocol.write_spill(protocol.spill_dir(runtime_dir), payload)
        return protocol.file_output(path, "oversized")
    return protocol.output(encoded)
