"""Breaks its own worker in the way the input asks: crashes, hangs in C code, forks children that
outlive it, floods its logs, or writes garbage frames to its own control pipe and slot socket.

Only the fault-injection suite (tests/faults) uses it. Every mode that leaves processes behind writes
their pids to `pid_dir` so the test can check they are gone.
"""

from __future__ import annotations

import ctypes
import gc
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable

from cog import BasePredictor, Input

# A frame header announcing 9 MiB, over the protocol's 8 MiB frame limit.
OVERSIZED_HEADER = struct.pack(">I", 9 * 1024 * 1024)
MALFORMED_FRAME = struct.pack(">I", 9) + b"{not json"


def _write_pid(pid_dir: str, name: str, pid: int) -> None:
    # os-level calls only: this also runs in forked children of a multi-threaded process.
    fd = os.open(os.path.join(pid_dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)


def _channel(kind: str):
    """The worker's own channel object (found by type name, the way stray model code could)."""
    for obj in gc.get_objects():
        if type(obj).__name__ == kind:
            return obj
    raise RuntimeError(f"no {kind} in this process")


def _write_control(data: bytes) -> None:
    ch = _channel("FdChannel")
    with ch.lock:
        os.write(ch.fd, data)


def _write_slot(data: bytes) -> None:
    ch = _channel("SocketChannel")
    with ch.lock:
        ch.sock.sendall(data)


def _daemon_holding_fds(pid_dir: str) -> None:
    """Double fork + setsid, no exec: the daemon is a copy of the worker that keeps every fd it had,
    the control pipe and the slot socket included."""
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            daemon = os.fork()
            if daemon == 0:
                time.sleep(1000)
                os._exit(0)
            # Written before this intermediate exits, so it is there when predict() goes on.
            _write_pid(pid_dir, "daemon", daemon)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.waitpid(child, 0)


# Resolved once at import: `ctypes.CDLL(None)` runs Python code, where a cancel could still land.
_LIBC_PAUSE = ctypes.CDLL(None).pause


def _stuck_in_c(mode: str, call: Callable[..., object], *args: object) -> None:
    """Announces `mode`, then runs `call(*args)`, a blocking C function, which a cancel cannot reach.

    The cancel is an exception raised into this thread at its next Python-level check. One that arrives
    just after the log line (the test sees the line and cancels at once) would be raised as `print`
    returns, before the C call began (tests/faults/test_stuck_cancel.py saw that in CI); it is ignored
    here, so the prediction is in the C call however the cancel races the line. `call` must be a C function (no Python frame of
    its own, where the check runs again).
    """
    try:
        print(f"faulty: mode={mode}", flush=True)
    except BaseException:  # noqa: BLE001, S110 - a cancel before the C call: ignored, see above
        pass
    call(*args)


class Predictor(BasePredictor):
    def setup(self) -> None:
        self.children: list[subprocess.Popen] = []

    def predict(
        self,
        mode: str = Input(description="what to break", default="ok"),
        seconds: float = Input(description="how long the sleeping modes sleep", default=1.0),
        pid_dir: str = Input(description="where modes that leave processes write their pids", default=""),
        megabytes: int = Input(description="how much the log modes write", default=1),
    ) -> dict:
        info = {"pid": os.getpid(), "generation": int(os.environ.get("COGVISOR_GENERATION", "0"))}
        if mode == "sleep":  # a blocking C call: a cancel cannot interrupt it
            _stuck_in_c(mode, time.sleep, seconds)
            return info
        if mode == "pause":  # blocks in libc until a signal arrives
            _stuck_in_c(mode, _LIBC_PAUSE)
            return info
        print(f"faulty: mode={mode}", flush=True)
        if mode == "ok":
            return info
        if mode == "os_exit":
            os._exit(7)
        if mode == "segfault":
            ctypes.string_at(0)
        if mode == "system_exit":
            raise SystemExit(4)
        if mode == "sigkill_self":
            os.kill(os.getpid(), 9)
        if mode in ("children", "children_then_exit"):
            plain = subprocess.Popen(["sleep", "1000"])
            inheriting = subprocess.Popen(["sleep", "1001"], close_fds=False)
            self.children += [plain, inheriting]
            _write_pid(pid_dir, "plain", plain.pid)
            _write_pid(pid_dir, "inheriting", inheriting.pid)
            _daemon_holding_fds(pid_dir)
            if mode == "children_then_exit":
                os._exit(5)
            return info
        if mode == "log_flood":
            # `megabytes` MiB in lines of 100 bytes, written a few hundred lines at a time.
            line = "x" * 99 + "\n"
            chunk = line * 640  # 64,000 bytes
            total = megabytes * 1024 * 1024
            written = 0
            while written < total:
                sys.stdout.write(chunk)
                written += len(chunk)
            sys.stdout.flush()
            return info
        if mode == "long_line":
            sys.stdout.write("y" * (megabytes * 1024 * 1024) + "\n")
            sys.stdout.flush()
            return info
        if mode == "malformed_control_frame":
            _write_control(MALFORMED_FRAME)
            time.sleep(seconds)
            return info
        if mode == "oversized_control_frame":
            _write_control(OVERSIZED_HEADER)
            time.sleep(seconds)
            return info
        if mode == "malformed_slot_frame":
            _write_slot(MALFORMED_FRAME)
            time.sleep(seconds)
            return info
        if mode == "oversized_slot_frame":
            _write_slot(OVERSIZED_HEADER)
            time.sleep(seconds)
            return info
        raise ValueError(f"unknown mode {mode!r}")
