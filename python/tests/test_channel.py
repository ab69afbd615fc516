"""Slot channel writes: whole frames, and held frames written together in order."""

from __future__ import annotations

import socket
import threading

import pytest

from cogvisor_worker import protocol as p
from cogvisor_worker.channel import ChannelError, SocketChannel


def test_held_frames_are_written_together_in_order_on_release() -> None:
    a, b = socket.socketpair()
    try:
        ch = SocketChannel(a, "slot 0 socket")
        ch.hold()
        ch.send(p.output("x"))
        t = threading.Thread(target=ch.send, args=(p.slot_log("stdout", "from a thread\n"),))
        t.start()
        t.join()
        ch.send(p.done("pred", 0.5, False))
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(1)  # nothing written while held
        ch.release()
        expected = (
            p.encode_frame(p.output("x"))
            + p.encode_frame(p.slot_log("stdout", "from a thread\n"))
            + p.encode_frame(p.done("pred", 0.5, False))
        )
        assert b.recv(65536) == expected
        ch.send(p.idle(0))  # after release, frames go out at once again
        assert b.recv(65536) == p.encode_frame(p.idle(0))
    finally:
        a.close()
        b.close()


def test_release_on_a_broken_socket_names_the_channel() -> None:
    a, b = socket.socketpair()
    b.close()
    ch = SocketChannel(a, "slot 3 socket")
    ch.hold()
    ch.send(p.output("x"))
    with pytest.raises(ChannelError, match="slot 3 socket write failed"):
        ch.release()
    with pytest.raises(ChannelError, match="slot 3 socket write failed"):
        ch.send(p.output("y"))
    a.close()
