"""A fake supervisor for black-box worker tests: pipes for the control channel, Unix sockets for slots."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from typing import Any, Callable

from cogvisor_worker import protocol as p

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEADLINE = 30.0

Message = dict[str, Any]


# Taken at import, before any test points TMPDIR into its own tmp_path: the session directory holds
# the slot sockets, whose paths must stay short (AF_UNIX: 108 bytes). It is removed by close().
SHORT_TMP = tempfile.gettempdir()

def _pump(reader: p.FrameReader, q: "queue.Queue[Message | None | Exception]") -> None:
    try:
        while True:
            msg = reader.read_frame()
            q.put(msg)
            if msg is None:
                return
    except Exception as e:  # noqa: BLE001
        q.put(e)


class Supervisor:
    def __init__(
        self,
        files: dict[str, str],
        slots: int = 1,
        predictor_ref: str = "predict.py:Predictor",
        mode: str = "predict",
        setup: str = "full",
        protocol_version: int = 1,
        env: dict[str, str] | None = None,
        schema_refs: dict[str, str] | None = None,
        runtime_files: dict[str, str] | None = None,
    ) -> None:
        # Short paths: AF_UNIX socket paths are limited to 108 bytes.
        self.root = tempfile.mkdtemp(prefix="cvw-", dir=SHORT_TMP)
        self.model_dir = os.path.join(self.root, "model")
        self.runtime_dir = os.path.join(self.root, "rt")
        os.makedirs(os.path.join(self.runtime_dir, "spill"))
        os.makedirs(os.path.join(self.runtime_dir, "outputs"))
        for name, text in (runtime_files or {}).items():  # what an earlier worker left behind
            path = os.path.join(self.runtime_dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        for name, text in files.items():
            path = os.path.join(self.model_dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(textwrap.dedent(text))
        self.listeners: list[socket.socket] = []
        slot_specs = []
        for i in range(slots):
            path = os.path.join(self.runtime_dir, f"slot-{i}.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.listen(1)
            s.settimeout(DEADLINE)
            self.listeners.append(s)
            slot_specs.append(p.slot_socket(i, path))
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = PYTHON_DIR
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cogvisor_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.model_dir,
            env=full_env,
        )
        self.stderr = b""
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.control: queue.Queue[Any] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(
            target=_pump, args=(p.FrameReader.for_file(self.proc.stdout), self.control), daemon=True
        ).start()
        self.control_seen: list[Message] = []
        self.send(
            p.init(protocol_version, 1, predictor_ref, mode, setup, self.runtime_dir, slot_specs, schema_refs)
        )
        self.slots: list[socket.socket] = []
        self.slot_queues: list[queue.Queue[Any]] = []

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self.stderr += chunk

    # -- control ----------------------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(p.encode_frame(msg))
        self.proc.stdin.flush()

    def next_control(self, timeout: float = DEADLINE) -> Message | None:
        item = self.control.get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        if item is not None:
            self.control_seen.append(item)
        return item

    def expect_control(self, pred: Callable[[Message], bool], timeout: float = DEADLINE) -> Message:
        """The first control message matching ``pred`` (others are kept in control_seen)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching control message; saw {self.control_seen}; stderr {self.stderr!r}")
            try:
                msg = self.next_control(left)
            except queue.Empty:
                continue
            if msg is None:
                raise AssertionError(f"control EOF; saw {self.control_seen}; stderr {self.stderr!r}")
            if pred(msg):
                return msg

    def expect_type(self, kind: str, timeout: float = DEADLINE) -> Message:
        return self.expect_control(lambda m: m["type"] == kind, timeout)

    def ready(self) -> Message:
        """Accept the slot connections and wait for ready."""
        for listener in self.listeners:
            conn, _ = listener.accept()
            conn.settimeout(None)
            q: queue.Queue[Any] = queue.Queue()
            threading.Thread(target=_pump, args=(p.FrameReader.for_socket(conn), q), daemon=True).start()
            self.slots.append(conn)
            self.slot_queues.append(q)
        return self.expect_control(lambda m: m["type"] in ("ready", "setup_failed"))

    def control_logs(self) -> str:
        return "".join(m["data"] for m in self.control_seen if m["type"] == "log")

    # -- slots ------------------------------------------------------------------------------------
    def predict(
        self,
        slot: int,
        id: str,
        input: Any = None,
        input_file: str | None = None,
        context: dict[str, str] | None = None,
    ) -> str:
        output_dir = os.path.join(self.runtime_dir, "outputs", id)
        os.makedirs(output_dir)
        if input is None and input_file is None:
            input = {}
        msg = p.predict(id, output_dir, input=input, input_file=input_file, context=context)
        self.slots[slot].sendall(p.encode_frame(msg))
        return output_dir

    def next_slot(self, slot: int, timeout: float = DEADLINE) -> Message | None:
        item = self.slot_queues[slot].get(timeout=timeout)
        if isinstance(item, Exception):
            raise item
        return item

    def until_terminal(self, slot: int, timeout: float = DEADLINE) -> list[Message]:
        """Every slot message up to and including the terminal one."""
        deadline = time.monotonic() + timeout
        got: list[Message] = []
        while True:
            msg = self.next_slot(slot, max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError(f"slot EOF after {got}; stderr {self.stderr!r}")
            got.append(msg)
            if msg["type"] in ("done", "failed", "cancelled"):
                return got

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for s in self.slots + self.listeners:
            s.close()
        shutil.rmtree(self.root, ignore_errors=True)


def logs(msgs: list[Message], source: str | None = None) -> str:
    return "".join(m["data"] for m in msgs if m["type"] == "log" and (source is None or m["source"] == source))


def outputs(msgs: list[Message]) -> list[Any]:
    return [m["output"] for m in msgs if m["type"] == "output"]
