"""Turning model outputs into slot messages: JSON values, file outputs and spill files."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import io
import itertools
import mimetypes
import os
import pathlib
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

from . import protocol


# The deepest nesting of arrays and objects an output value may have. The supervisor parses each slot
# message with serde_json, which refuses more than 127 levels (the message object itself is one of
# them); deeper values fail their prediction here, naming the limit, instead of breaking the slot.
MAX_OUTPUT_DEPTH = 100


def is_stream(value: Any) -> bool:
    """Whether a return value is a sequence of outputs (generator, iterator, list, tuple)."""
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, (str, bytes, bytearray, dict)):
        return False
    return isinstance(value, (Iterator, AsyncIterator))


def _at(where: str) -> str:
    return "" if where == "output" else f" (at {where})"


def data_url(data: bytes, name: str) -> str:
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _file_to_data_url(value: Any) -> str:
    if isinstance(value, pathlib.PurePath):
        try:
            with open(value, "rb") as f:
                return data_url(f.read(), str(value))
        except OSError as e:
            raise TypeError(f"cannot read output file {value}: {e.strerror or e}") from e
    data = value.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    return data_url(bytes(data), str(getattr(value, "name", "") or "file.bin"))


def _check_depth(depth: int, where: str) -> None:
    if depth >= MAX_OUTPUT_DEPTH:
        raise ValueError(f"output is nested more than {MAX_OUTPUT_DEPTH} levels deep{_at(where)}")


def to_json(value: Any, files: bool = False, where: str = "output", depth: int = 0) -> Any:
    """A JSON-compatible copy of ``value`` by Cog's rules. With ``files``, paths and file objects
    (anywhere in the value) become ``data:`` URLs; without, paths become their path string.
    ``depth`` is the number of arrays and objects ``value`` sits in; a container past
    ``MAX_OUTPUT_DEPTH`` levels raises ``ValueError``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, enum.Enum):
        return to_json(value.value, files, where, depth)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            raise TypeError(f"Out of range float value {value} is not JSON compliant{_at(where)}")
        return value
    if isinstance(value, dict):
        _check_depth(depth, where)
        return {
            (k if isinstance(k, str) else str(to_json(k, files, where, depth))): to_json(
                v, files, f"{where}[{k!r}]", depth + 1
            )
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple, set, frozenset)):
        _check_depth(depth, where)
        return [to_json(v, files, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, pathlib.PurePath):
        return _file_to_data_url(value) if files else str(value)
    if isinstance(value, io.IOBase) and files:
        return _file_to_data_url(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _check_depth(depth, where)
        return {
            f.name: to_json(getattr(value, f.name), files, f"{where}.{f.name}", depth + 1)
            for f in dataclasses.fields(value)
        }
    if not isinstance(value, type):
        for name in ("model_dump", "dict"):
            dump = getattr(value, name, None)
            if callable(dump) and not isinstance(value, type):
                try:
                    dumped = dump()
                except TypeError:
                    continue
                return to_json(dumped, files, where, depth)
        # numpy scalars and arrays, without importing numpy
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            return to_json(tolist(), files, where, depth)
        item = getattr(value, "item", None)
        if callable(item):
            return to_json(item(), files, where, depth)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable{_at(where)}")


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


_file_counter = itertools.count()


def _write_file_object(value: Any, output_dir: str) -> str:
    """Write a file object's bytes to ``output_dir/<n>.<ext>`` (extension from its name, else bin)."""
    name = str(getattr(value, "name", "") or "")
    ext = os.path.splitext(name)[1] or ".bin"
    os.makedirs(output_dir, exist_ok=True)
    dest = os.path.join(os.path.abspath(output_dir), f"{uuid.uuid4().hex[:8]}-{next(_file_counter)}{ext}")
    data = value.read()
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(dest, "wb") as f:
        f.write(data)
    return dest


def output_message(value: Any, output_dir: str, runtime_dir: str) -> protocol.Message:
    """The slot message carrying one output value: ``output``, or ``file_output`` (file or spill).

    A file at the top level (a path or a file object) travels as ``file_output`` so the supervisor
    can turn it into a data URL or an upload; files nested in containers become data URLs here."""
    if isinstance(value, pathlib.PurePath):
        filename = _keep_file(value, output_dir)
        mime, _ = mimetypes.guess_type(filename)
        return protocol.file_output(filename, "file", mime)
    if isinstance(value, io.IOBase):
        filename = _write_file_object(value, output_dir)
        mime, _ = mimetypes.guess_type(filename)
        return protocol.file_output(filename, "file", mime)
    encoded = to_json(value, files=True)
    if isinstance(encoded, str) and len(encoded) >= LARGE_STRING:
        msg = _large_string_message(encoded, runtime_dir)
        if msg is not None:
            return msg
    payload = protocol.dumps(encoded).encode("utf-8")
    if len(payload) > protocol.MAX_INLINE_PAYLOAD:
        path = protocol.write_spill(protocol.spill_dir(runtime_dir), payload)
        return protocol.file_output(path, "oversized")
    return _inline_output(encoded, payload)


# Strings from this many characters up take the large-string path.
LARGE_STRING = 64 * 1024

# Spill files of large strings are written this many characters at a time.
SPILL_CHUNK = 1024 * 1024

# What JSON escapes in a string (without ensure_ascii): quote, backslash, control characters.
_ESCAPED = ('"', "\\", *map(chr, range(0x20)))


def _inline_output(value: Any, *payload: bytes) -> protocol.Message:
    """The ``output`` message for a value whose JSON is the concatenated ``payload``, sent without
    serializing it again."""
    return protocol.Encoded(protocol.output(value), (b'{"type":"output","output":', *payload, b"}"))


def _large_string_message(text: str, runtime_dir: str) -> protocol.Message | None:
    """The message for a large string output that needs no JSON escapes (its JSON is itself in quotes),
    built without ``json.dumps``' full copy; a spilled one is written to its file piece by piece.
    None when the string needs escapes or is not valid UTF-8: then the general path handles it (and
    reports its errors)."""
    if any(c in text for c in _ESCAPED):
        return None
    if text.isascii():
        size = len(text) + 2
        data = None
    else:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        size = len(data) + 2
    if size <= protocol.MAX_INLINE_PAYLOAD:
        return _inline_output(text, b'"', data if data is not None else text.encode("ascii"), b'"')

    def pieces() -> Iterator[bytes]:
        yield b'"'
        if data is not None:
            yield data
        else:
            for start in range(0, len(text), SPILL_CHUNK):
                yield text[start : start + SPILL_CHUNK].encode("ascii")
        yield b'"'

    path = protocol.write_spill_chunks(protocol.spill_dir(runtime_dir), pieces())
    return protocol.file_output(path, "oversized")
