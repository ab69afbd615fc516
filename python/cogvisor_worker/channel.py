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
    """A slot socket's write side; sendall is one C call."""

    def __init__(self, sock: socket.socket, name: str) -> None:
        super().__init__(name)
        self.sock = sock

    def _write(self, frame: bytes) -> None:
        self.sock.sendall(frame)
