"""File-descriptor redirection and log routing.

Before any model code runs the worker moves the control channel off fds 0/1 (to close-on-exec
duplicates), points fd 0 at /dev/null and replaces fds 1 and 2 with pipes. Two daemon threads read those
pipes, so anything written to fd 1/2 (C extensions, ``os.system``, subprocesses) becomes a log message
and can never corrupt the control channel. ``sys.stdout``/``sys.stderr`` become :class:`LogWriter`
objects that route Python-level prints to the prediction running in the current context.
"""

from __future__ import annotations

import codecs
import contextvars
import fcntl
import io
import os
import select
import struct
import sys
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from . import protocol
from .channel import Channel

READ_CHUNK = 64 * 1024
# A Python-level line longer than this is sent without waiting for its newline.
MAX_PENDING_LINE = 64 * 1024
# A log batch this large (in characters) is sent at once.
FLUSH_BYTES = 64 * 1024
# The longest a batched line waits for more text before it is sent, in seconds.
LINGER = 0.005


class LogTarget(Protocol):
    """A running prediction as seen by the log plumbing."""

    def log(self, source: str, data: str) -> bool:
        """Send a log message for this prediction; False if it has already ended."""
        ...

    def on_send_thread(self) -> bool:
        """Whether this thread may send this target's messages now (an async prediction: its loop)."""
        ...

    def defer(self, fn: Any) -> bool:
        """Run ``fn`` soon on the thread that sends this target's messages; False when the target has
        no such thread (then the router's flusher thread sends its batches)."""
        ...


@dataclass
class SavedFds:
    control_in: int
    control_out: int
    diagnostics: int
    stdout_pipe: int
    stderr_pipe: int


def redirect_fds() -> SavedFds:
    """Move the control channel off fds 0/1 and replace fds 0/1/2. Call before any model code."""
    control_in = os.dup(0)  # os.dup: non-inheritable (close-on-exec)
    control_out = os.dup(1)
    diagnostics = os.dup(2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # dup2 makes fd 0/1/2 inheritable again, as they should be
    os.close(devnull)
    pipes = []
    for target in (1, 2):
        r, w = os.pipe()  # both non-inheritable
        os.dup2(w, target)
        os.close(w)
        pipes.append(r)
    return SavedFds(control_in, control_out, diagnostics, pipes[0], pipes[1])


def diag(fd: int, text: str) -> None:
    """Last-resort diagnostics to the worker's original stderr; never raises."""
    try:
        data = f"cogvisor-worker: {text}\n".encode("utf-8", "replace")
        while data:
            n = os.write(fd, data)
            data = data[n:]
    except Exception:
        pass


@dataclass(slots=True)
class _Run:
    """Consecutive text of one source: one log message."""

    source: str
    parts: list[str]


@dataclass(slots=True)
class _Batch:
    runs: list[_Run]
    size: int  # characters in all runs


class LogRouter:
    """Decides where a log chunk goes: the running prediction's slot, or the control channel.

    Text is batched per target, but only when it comes fast: text written when nothing was sent for
    that target in the last ``LINGER`` seconds goes at once; what follows it within ``LINGER`` waits
    in a batch (consecutive chunks of one source become one log message), which is sent when it
    reaches ``FLUSH_BYTES``, ``LINGER`` seconds after its first chunk, on ``flush()``, before the
    target's next non-log message, and when the prediction ends. One frame
    per ``print`` (a JSON encoding and a socket write each, and as much work again in the supervisor)
    was what made printing slow. Every chunk passes through here in the order it was written, so
    Python-level prints and fd-level output keep their relative order.

    The batch of an async prediction is only ever sent from its event loop (its target says which
    thread that is, and takes callbacks for it), so its logs stay ordered with its outputs, which the
    loop writes.
    """

    def __init__(self, control: Channel) -> None:
        self.control = control
        # The prediction of the current context (set per thread / per asyncio task).
        self.current: contextvars.ContextVar[LogTarget | None] = contextvars.ContextVar(
            "cogvisor_prediction", default=None
        )
        # The running sync prediction, if any: owner of fd-level output and of prints from stray threads.
        self.current_sync: LogTarget | None = None
        # Held while a batch changes or is sent: sending under it keeps the batches of a target in order.
        self.lock = threading.RLock()
        self._batches: dict[Any, _Batch] = {}
        # Targets whose batch the flusher thread sends once it is LINGER old: target -> first chunk's time.
        self._timed: dict[Any, float] = {}
        self._wake = threading.Condition(self.lock)
        self._flusher: threading.Thread | None = None
        self._direct = False  # no batching (a forked child: see _after_fork_in_child)
        self._control_sent_at = 0.0  # when control-channel log text was last sent (see emit)
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self) -> None:
        """A child forked by model code (``multiprocessing``, ``os.fork``) has none of our threads, and
        may have been forked while one held the lock: it gets a fresh lock and sends what it prints at
        once, as it may leave with ``os._exit`` at any moment."""
        self.lock = threading.RLock()
        self._wake = threading.Condition(self.lock)
        self._batches = {}
        self._timed = {}
        self._flusher = None
        self._direct = True

    def control_log(self, source: str, data: str) -> None:
        if data:
            self.control.try_send(protocol.control_log(source, data))

    def send(self, target: LogTarget | None, source: str, data: str) -> None:
        """Send one log message now (no batching)."""
        if not data:
            return
        if target is not None:
            try:
                if target.log(source, data):
                    return
            except Exception:
                pass
        self.control_log(source, data)

    def emit(self, target: LogTarget | None, source: str, data: str) -> None:
        """Add text to ``target``'s batch (see the class comment for when it is sent)."""
        if not data:
            return
        if self._direct:
            self.send(target, source, data)
            return
        with self.lock:
            batch = self._batches.get(target)
            if batch is None:
                if self._can_send(target):
                    # Nothing sent for a while: this text goes at once (a line printed just before a
                    # crash is not lost); only text that follows within LINGER waits in a batch.
                    if time.monotonic() - self._sent_at(target) >= LINGER:
                        self.send(target, source, data)
                        self._set_sent_at(target, time.monotonic())
                        return
                self._batches[target] = batch = _Batch([_Run(source, [data])], len(data))
                if batch.size < FLUSH_BYTES or not self._can_send(target):
                    self._schedule(target)
                    return
            else:
                last = batch.runs[-1]
                if last.source is source or last.source == source:
                    last.parts.append(data)
                else:
                    batch.runs.append(_Run(source, [data]))
                batch.size += len(data)
                if batch.size < FLUSH_BYTES:
                    return
            if self._can_send(target):
                self._send_batch(target)

    def flush(self, target: LogTarget | None) -> None:
        """Send ``target``'s batch now (from a thread that may send for it; else as soon as it can)."""
        with self.lock:
            if target not in self._batches:
                return
            if self._can_send(target):
                self._send_batch(target)
            else:
                self._schedule(target)

    def flush_all(self) -> None:
        """Send every batch that can be sent from this thread (the worker is exiting)."""
        with self.lock:
            for target in list(self._batches):
                if self._can_send(target):
                    self._send_batch(target)

    def python_target(self) -> LogTarget | None:
        return self.current.get() or self.current_sync

    # -- batching internals (called with self.lock held) -------------------------------------------
    @staticmethod
    def _can_send(target: Any) -> bool:
        return target is None or bool(target.on_send_thread())

    def _sent_at(self, target: Any) -> float:
        return self._control_sent_at if target is None else getattr(target, "log_sent_at", 0.0)

    def _set_sent_at(self, target: Any, when: float) -> None:
        if target is None:
            self._control_sent_at = when
        else:
            try:
                target.log_sent_at = when
            except AttributeError:
                pass

    def _send_batch(self, target: Any) -> None:
        batch = self._batches.pop(target, None)
        self._timed.pop(target, None)
        if batch is not None:
            for run in batch.runs:
                self.send(target, run.source, run.parts[0] if len(run.parts) == 1 else "".join(run.parts))
            self._set_sent_at(target, time.monotonic())  # after: a slow send must not end the batching

    def _schedule(self, target: Any) -> None:
        if target is not None:
            try:
                if target.defer(lambda: self.flush(target)):
                    return
            except Exception:  # the loop is gone: the flusher sends it (the target falls back to control)
                pass
        if target in self._timed:
            return
        self._timed[target] = time.monotonic()
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="cogvisor-log-flusher", daemon=True)
            self._flusher.start()
        if len(self._timed) == 1:
            self._wake.notify()

    def _flush_loop(self) -> None:
        with self.lock:
            while True:
                if not self._timed:
                    self._wake.wait()
                    continue
                due = min(self._timed.values()) + LINGER
                now = time.monotonic()
                if now < due:
                    self._wake.wait(due - now)
                    continue
                for target, first in list(self._timed.items()):
                    if first + LINGER <= now:
                        try:
                            self._send_batch(target)
                        except Exception:
                            self._batches.pop(target, None)
                            self._timed.pop(target, None)


class PipeReader(threading.Thread):
    """Reads one of the fd 1/2 pipes and turns what arrives into log messages."""

    def __init__(self, fd: int, source: str, router: LogRouter) -> None:
        super().__init__(name=f"cogvisor-{source}-reader", daemon=True)
        self.fd = fd
        self.source = source
        self.router = router
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._cond = threading.Condition()
        self._in_flight = False
        self._last_read = 0.0  # time.monotonic() of the last read that returned data

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN | select.POLLHUP)
        while True:
            try:
                poller.poll()
            except InterruptedError:
                continue
            with self._cond:
                self._in_flight = True
            try:
                try:
                    data = os.read(self.fd, READ_CHUNK)
                except BlockingIOError:
                    data = None
                except OSError:
                    return
                if data == b"":
                    return
                if data:
                    self._last_read = time.monotonic()
                    text = self._decoder.decode(data)
                    if text:
                        self.router.emit(self.router.current_sync, self.source, text)
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()

    def _pending(self) -> int:
        try:
            return int(struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0])
        except OSError:
            return 0

    def drain(self, timeout: float = 2.0, quiet: float = 0.0) -> None:
        """Wait until everything written to the pipe so far has been read and routed (bounded by
        ``timeout``). With ``quiet``, also until nothing has arrived for that long: a child still
        writing (a shell started in setup echoing line by line) leaves the pipe empty between two
        writes, and the wait must not end in such a gap. Without recent output it costs nothing."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                busy = self._in_flight or self._pending() > 0
                recent = quiet > 0 and now - self._last_read < quiet
                if not (busy or recent):
                    return
                left = deadline - now
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.01 if busy else quiet - (now - self._last_read)))


class LogWriter(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr``: line-buffered per prediction, flushed on newline and flush().

    Never raises into model code because a channel broke.
    """

    def __init__(self, source: str, fd: int, router: LogRouter) -> None:
        super().__init__()
        self.source = source
        self._fd = fd
        self._router = router
        self._pending: dict[Any, str] = {}
        self._buffer: _BinaryLogWriter | None = None

    # -- io.TextIOBase surface -------------------------------------------------------------------
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    @property
    def name(self) -> str:
        return f"<{self.source}>"

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:  # model code closing sys.stdout must not break logging
        self.flush()

    @property
    def closed(self) -> bool:  # type: ignore[override]
        return False

    @property
    def buffer(self) -> "_BinaryLogWriter":
        if self._buffer is None:
            self._buffer = _BinaryLogWriter(self)
        return self._buffer

    def write(self, s: str) -> int:  # type: ignore[override]
        # The hot path of every print (called twice by each: the text, then "\n"), kept short.
        try:
            if type(s) is not str:
                s = str(s)
            router = self._router
            target = router.current.get() or router.current_sync
            with self._router.lock:  # the batches' lock: text reaches them in the order written
                pending = self._pending
                if target in pending:
                    s_all = pending.pop(target) + s
                else:
                    s_all = s
                cut = s_all.rfind("\n") + 1
                if cut == len(s_all):  # ends with a newline: all of it goes
                    router.emit(target, self.source, s_all)
                elif cut:
                    router.emit(target, self.source, s_all[:cut])
                    pending[target] = s_all[cut:]
                elif len(s_all) > MAX_PENDING_LINE:
                    router.emit(target, self.source, s_all)
                elif s_all:
                    pending[target] = s_all
            return len(s)
        except Exception:
            return len(s) if isinstance(s, str) else 0

    def flush(self) -> None:
        """Send what this context has written, the unterminated line included, now."""
        self.flush_target(self._router.python_target())

    def flush_target(self, target: Any) -> None:
        """Send the text buffered for ``target`` (a prediction, or None for control) now, the
        unterminated line included."""
        try:
            with self._router.lock:  # the batches' lock: text reaches them in the order written
                rest = self._pending.pop(target, "")
                if rest:
                    self._router.emit(target, self.source, rest)
                self._router.flush(target)
        except Exception:
            pass


class _BinaryLogWriter(io.RawIOBase):
    """``sys.stdout.buffer``: bytes decoded (lossy UTF-8, incrementally) and passed to the text writer."""

    def __init__(self, text: LogWriter) -> None:
        super().__init__()
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._text.fileno()

    def write(self, b: Any) -> int:  # type: ignore[override]
        data = bytes(b)
        self._text.write(self._decoder.decode(data))
        return len(data)

    def flush(self) -> None:
        self._text.flush()


def install_writers(router: LogRouter) -> tuple[LogWriter, LogWriter]:
    out = LogWriter("stdout", 1, router)
    err = LogWriter("stderr", 2, router)
    sys.stdout = out
    sys.stderr = err
    return out, err
