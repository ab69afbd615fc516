"""Framed, lock-serialized writers for the control channel (a pipe fd) and slot channels (sockets)."""

from __future__ import annotations

import io
import os
import socket
import threading
from typing import Any

from . import protocol


class ChannelError(Exception):
    """A channel can no longer be written."""


class Channel:
    """Writes whole frames; every write is serialized by one lock, so several threads may send."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.broken: str | None = None

    def _write(self, frame: bytes) -> None:
        raise NotImplementedError

    def send(self, msg: protocol.Message) -> None:
        """Send one message. Raises ProtocolError if it cannot be encoded, ChannelError if the channel broke."""
        frame = protocol.encode_frame(msg)
        with self.lock:
            if self.broken is not None:
                raise ChannelError(self.broken)
            try:
                self._write(frame)
            except (OSError, ValueError) as e:
                self.broken = f"{self.name} write failed: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
                raise ChannelError(self.broken) from e

    def try_send(self, msg: protocol.Message) -> bool:
        """Send, swallowing every error; True if it was sent."""
        try:
            self.send(msg)
            return True
        except Exception:
            return False


class FdChannel(Channel):
    """The control channel's write end: a blocking pipe fd. One C-level write per frame."""

    def __init__(self, fd: int, name: str = "control channel") -> None:
        super().__init__(name)
        self.fd = fd
        self._file: Any = io.BufferedWriter(io.FileIO(fd, "wb", closefd=False), buffer_size=65536)

    def _write(self, frame: bytes) -> None:
        self._file.write(frame)
        self._file.flush()


class SocketChannel(Channel):
    """A slot socket's write side; sendall is one C call.

    ``hold()`` keeps the frames sent afterwards (from any thread, in order) until ``release()`` writes them
    with one call: a sync prediction's single output, its last logs and its terminal message reach the
    supervisor in one read instead of three."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        super().__init__(name)
        self.sock = sock
        self._held: list[bytes] | None = None

    def _write(self, frame: bytes) -> None:
        if self._held is not None:
            self._held.append(frame)
        else:
            self.sock.sendall(frame)

    def hold(self) -> None:
        with self.lock:
            if self._held is None:
                self._held = []

    def release(self) -> None:
        """Write every held frame now, and stop holding. Raises ChannelError if the channel broke."""
        with self.lock:
            held, self._held = self._held, None
            if not held or self.broken is not None:
                if self.broken is not None:
                    raise ChannelError(self.broken)
                return
            try:
                self.sock.sendall(b"".join(held) if len(held) > 1 else held[0])
            except (OSError, ValueError) as e:
                self.broken = f"{self.name} write failed: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
                raise ChannelError(self.broken) from e
