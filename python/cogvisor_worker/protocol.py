"""The cogvisor wire protocol, Python side.

Mirrors ``crates/protocol``: message builders (dicts whose key order matches the Rust serializer, so the
compact JSON is byte-for-byte identical), the frame codec (4-byte big-endian length + one UTF-8 JSON
object), the log truncation rule and spill files.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Iterable
from typing import Any, Callable

PROTOCOL_VERSION: int = 1
MAX_FRAME_LEN: int = 8 * 1024 * 1024
MAX_INLINE_PAYLOAD: int = 6 * 1024 * 1024
MAX_LOG_LEN: int = 4 * 1024 * 1024
LOG_TRUNCATION_NOTICE: str = "\n[cogvisor: log message truncated at 4 MiB]\n"
HEADER_LEN: int = 4

Message = dict[str, Any]


class Encoded(dict):  # type: ignore[type-arg]
    """A message whose frame is already built from its serialized payload (``parts``, in order: the
    compact JSON of the message itself), so sending it serializes nothing a second time and copies
    the payload once. It reads like the plain message dict."""

    __slots__ = ("frame",)

    def __init__(self, msg: Message, parts: Iterable[bytes]) -> None:
        super().__init__(msg)
        pieces = list(parts)
        self.frame = b"".join([struct.pack(">I", sum(len(p) for p in pieces)), *pieces])


class ProtocolError(Exception):
    """A frame could not be read or written: oversized, malformed, truncated or not a message."""


# ---------------------------------------------------------------------------------------------------
# JSON and frames


def dumps(value: Any) -> str:
    """Compact JSON exactly like serde_json: no spaces, non-ASCII kept as UTF-8, NaN/Infinity refused."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_json(msg: Message) -> bytes:
    """The frame payload for ``msg``."""
    if isinstance(msg, Encoded):
        return msg.frame[HEADER_LEN:]
    try:
        return dumps(msg).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise ProtocolError(f"cannot encode {msg.get('type')!r} message: {e}") from e


def encode_frame(msg: Message) -> bytes:
    """4-byte big-endian payload length, then the compact JSON payload."""
    if isinstance(msg, Encoded):
        if len(msg.frame) - HEADER_LEN > MAX_FRAME_LEN:
            raise ProtocolError(
                f"frame of {len(msg.frame) - HEADER_LEN} bytes exceeds the limit of {MAX_FRAME_LEN} bytes"
            )
        return msg.frame
    payload = encode_json(msg)
    if len(payload) > MAX_FRAME_LEN:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the limit of {MAX_FRAME_LEN} bytes")
    return struct.pack(">I", len(payload)) + payload


def decode_payload(payload: bytes | bytearray | memoryview) -> Message:
    """Parse one frame payload; it must be a JSON object with a string ``type``."""
    try:
        text = str(payload, "utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(f"malformed frame of {len(payload)} bytes: {e}") from e
    return decode_payload_text(text, len(payload))


def decode_payload_text(text: str, length: int) -> Message:
    """Parse one frame payload already decoded from ``length`` bytes of UTF-8."""
    try:
        msg = json.loads(text)
    except ValueError as e:
        raise ProtocolError(f"malformed frame of {length} bytes: {e}") from e
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"malformed frame of {length} bytes: not a message object with a type")
    return msg


class FrameReader:
    """Reads frames from a byte source. ``recv(n)`` returns up to ``n`` bytes, ``b""`` at end of stream."""

    def __init__(self, recv: Callable[[int], bytes], max_len: int = MAX_FRAME_LEN) -> None:
        self._recv = recv
        self._max_len = max_len
        self._buf = bytearray()

    @classmethod
    def for_fd(cls, fd: int, max_len: int = MAX_FRAME_LEN) -> "FrameReader":
        return cls(lambda n: os.read(fd, n), max_len)

    @classmethod
    def for_file(cls, f: Any, max_len: int = MAX_FRAME_LEN) -> "FrameReader":
        reader = getattr(f, "read1", None) or f.read
        return cls(lambda n: reader(n), max_len)

    @classmethod
    def for_socket(cls, sock: Any, max_len: int = MAX_FRAME_LEN) -> "FrameReader":
        return cls(sock.recv, max_len)

    def _fill(self, n: int) -> bool:
        """Buffer at least ``n`` bytes; False on a clean end of stream before any byte of the frame."""
        while len(self._buf) < n:
            chunk = self._recv(max(65536, n - len(self._buf)))
            if not chunk:
                if not self._buf:
                    return False
                raise ProtocolError(
                    f"stream ended in the middle of a frame ({len(self._buf)} of {n} bytes received)"
                )
            self._buf.extend(chunk)
        return True

    def read_frame(self) -> Message | None:
        """The next message, or None at a clean end of stream. Raises ProtocolError on a bad frame."""
        if not self._fill(HEADER_LEN):
            return None
        (length,) = struct.unpack(">I", bytes(self._buf[:HEADER_LEN]))
        if length > self._max_len:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self._max_len} bytes")
        if not self._fill(HEADER_LEN + length):
            raise ProtocolError("stream ended in the middle of a frame")
        # Decoded straight from the buffer: no bytes copy of the payload on the way to the text.
        with memoryview(self._buf) as view:
            try:
                text = str(view[HEADER_LEN : HEADER_LEN + length], "utf-8")
            except UnicodeDecodeError as e:
                raise ProtocolError(f"malformed frame of {length} bytes: {e}") from e
        del self._buf[: HEADER_LEN + length]
        return decode_payload_text(text, length)


# ---------------------------------------------------------------------------------------------------
# Log truncation


def truncate_log(text: str) -> str:
    """Cut ``text`` to at most MAX_LOG_LEN bytes of UTF-8 including the notice, on a character boundary."""
    if len(text) * 4 <= MAX_LOG_LEN:  # fast path: cannot exceed the limit
        return text
    data = text.encode("utf-8", errors="surrogatepass")
    if len(data) <= MAX_LOG_LEN:
        return text
    cut = MAX_LOG_LEN - len(LOG_TRUNCATION_NOTICE.encode("utf-8"))
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # continuation byte: not a char boundary
        cut -= 1
    return data[:cut].decode("utf-8", errors="surrogatepass") + LOG_TRUNCATION_NOTICE


# ---------------------------------------------------------------------------------------------------
# Spill files


def spill_dir(runtime_dir: str) -> str:
    return os.path.join(runtime_dir, "spill")


def write_spill(directory: str, payload: bytes) -> str:
    """Write an already-serialized JSON payload to a new spill file in ``directory``; return its path."""
    return write_spill_chunks(directory, (payload,))


def write_spill_chunks(directory: str, chunks: Iterable[bytes]) -> str:
    """Write a JSON payload given as consecutive pieces to a new spill file in ``directory`` (so the
    whole payload never has to exist as one buffer); return its path. A failed write removes the file."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"spill-{uuid.uuid4()}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                n = os.write(fd, view)
                view = view[n:]
    except BaseException:
        os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
    os.close(fd)
    return path


def take_spill(directory: str, path: str) -> Any:
    """Read the spill file ``path`` (which must lie directly in ``directory``), delete it, then parse it.

    The file's bytes are freed once decoded, so at most two full-size copies (text, then value) live
    at a time."""
    parent = os.path.dirname(path)
    try:
        inside = os.path.realpath(parent) == os.path.realpath(directory) and os.path.basename(path) != ""
    except OSError:
        inside = False
    if not inside:
        raise ProtocolError(f"spill file {path} is not in the spill directory {directory}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ProtocolError(f"cannot read spill file {path}: {e}") from e
    try:
        os.unlink(path)
    except OSError as e:
        raise ProtocolError(f"cannot delete spill file {path}: {e}") from e
    try:
        text = data.decode("utf-8")
        del data
        return json.loads(text)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"malformed spill file {path}: {e}") from e


# ---------------------------------------------------------------------------------------------------
# Control requests (supervisor → worker); built here for tests and fakes.


def slot_socket(slot: int, socket: str) -> Message:
    return {"slot": slot, "socket": socket}


def init(
    protocol_version: int,
    generation: int,
    predictor_ref: str,
    mode: str,
    setup: str,
    runtime_dir: str,
    slots: list[Message],
    schema_refs: dict[str, str] | None = None,
) -> Message:
    msg: Message = {
        "type": "init",
        "protocol_version": protocol_version,
        "generation": generation,
        "predictor_ref": predictor_ref,
        "mode": mode,
        "setup": setup,
        "runtime_dir": runtime_dir,
        "slots": slots,
    }
    if schema_refs is not None:
        msg["schema_refs"] = {k: schema_refs[k] for k in ("predict", "train") if k in schema_refs}
    return msg


def cancel(slot: int, id: str) -> Message:
    return {"type": "cancel", "slot": slot, "id": id}


def healthcheck(id: str) -> Message:
    return {"type": "healthcheck", "id": id}


def heartbeat(seq: int) -> Message:
    return {"type": "heartbeat", "seq": seq}


def shutdown() -> Message:
    return {"type": "shutdown"}


# ---------------------------------------------------------------------------------------------------
# Control responses (worker → supervisor)


def ready(python_version: str, sdk_version: str, has_healthcheck: bool, schema: Any = None) -> Message:
    msg: Message = {
        "type": "ready",
        "python_version": python_version,
        "sdk_version": sdk_version,
        "has_healthcheck": has_healthcheck,
    }
    if schema is not None:
        msg["schema"] = schema
    return msg


def control_log(source: str, data: str) -> Message:
    return {"type": "log", "source": source, "data": truncate_log(data)}


def worker_log(level: str, message: str) -> Message:
    return {"type": "worker_log", "level": level, "message": truncate_log(message)}


def idle(slot: int) -> Message:
    return {"type": "idle", "slot": slot}


def control_cancelled(slot: int, id: str) -> Message:
    return {"type": "cancelled", "slot": slot, "id": id}


def control_failed(slot: int, error: str) -> Message:
    return {"type": "failed", "slot": slot, "error": truncate_log(error)}


def setup_failed(error: str) -> Message:
    return {"type": "setup_failed", "error": truncate_log(error)}


def fatal(reason: str) -> Message:
    return {"type": "fatal", "reason": truncate_log(reason)}


def dropped_logs(count: int, interval_millis: int) -> Message:
    return {"type": "dropped_logs", "count": count, "interval_millis": interval_millis}


def healthcheck_result(id: str, status: str, error: str | None = None) -> Message:
    msg: Message = {"type": "healthcheck_result", "id": id, "status": status}
    if error is not None:
        msg["error"] = truncate_log(error)
    return msg


def heartbeat_ack(seq: int) -> Message:
    return {"type": "heartbeat_ack", "seq": seq}


def shutting_down() -> Message:
    return {"type": "shutting_down"}


def recycle_requested(reason: str, rerun_setup: bool) -> Message:
    return {"type": "recycle_requested", "reason": truncate_log(reason), "rerun_setup": rerun_setup}


# ---------------------------------------------------------------------------------------------------
# Slot requests (supervisor → worker)


def predict(
    id: str,
    output_dir: str,
    input: Any = None,
    input_file: str | None = None,
    context: dict[str, str] | None = None,
) -> Message:
    msg: Message = {"type": "predict", "id": id}
    if input is not None:
        msg["input"] = input
    if input_file is not None:
        msg["input_file"] = input_file
    msg["output_dir"] = output_dir
    msg["context"] = dict(sorted((context or {}).items()))  # BTreeMap order
    return msg


# ---------------------------------------------------------------------------------------------------
# Slot responses (worker → supervisor)


def slot_log(source: str, data: str) -> Message:
    return {"type": "log", "source": source, "data": truncate_log(data)}


def output(value: Any) -> Message:
    return {"type": "output", "output": value}


def file_output(filename: str, kind: str, mime_type: str | None = None) -> Message:
    msg: Message = {"type": "file_output", "filename": filename, "kind": kind}
    if mime_type is not None:
        msg["mime_type"] = mime_type
    return msg


def metric(name: str, value: Any, mode: str) -> Message:
    return {"type": "metric", "name": name, "value": value, "mode": mode}


def slot_recycle_requested(reason: str, rerun_setup: bool) -> Message:
    """``cog.recycle_worker()`` during a prediction: on its slot, so it precedes the terminal message."""
    return {"type": "recycle_requested", "reason": truncate_log(reason), "rerun_setup": rerun_setup}


def done(id: str, predict_time: float, is_stream: bool) -> Message:
    return {"type": "done", "id": id, "predict_time": float(predict_time), "is_stream": is_stream}


def slot_failed(id: str, error: str) -> Message:
    return {"type": "failed", "id": id, "error": truncate_log(error)}


def slot_cancelled(id: str) -> Message:
    return {"type": "cancelled", "id": id}
