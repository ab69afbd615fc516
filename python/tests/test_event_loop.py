"""The worker's event loop waits with microsecond timeouts (asyncio's epoll selector rounds to 1 ms)."""

from __future__ import annotations

import asyncio
import select
import socket
from typing import Any

import pytest

from cogvisor_worker import event_loop


def test_timed_wait_goes_through_select_with_the_exact_timeout(monkeypatch: Any) -> None:
    seen: list[Any] = []
    real = select.select

    def spy(r: Any, w: Any, x: Any, timeout: Any = None) -> Any:
        seen.append(timeout)
        return real(r, w, x, timeout)

    monkeypatch.setattr(select, "select", spy)
    sel = event_loop.PreciseEpollSelector()
    try:
        assert sel.select(0.0003) == []
        assert seen == [0.0003]
        assert sel.select(0) == []  # a poll never waits in select()
        assert seen == [0.0003]
    finally:
        sel.close()


def test_ready_events_are_returned_after_a_timed_wait() -> None:
    a, b = socket.socketpair()
    sel = event_loop.PreciseEpollSelector()
    try:
        import selectors

        sel.register(a, selectors.EVENT_READ, "a")
        b.send(b"x")
        events = sel.select(5.0)
        assert [(key.data, mask) for key, mask in events] == [("a", selectors.EVENT_READ)]
    finally:
        sel.close()
        a.close()
        b.close()


def test_new_event_loop_uses_the_precise_selector_and_runs_coroutines() -> None:
    loop = event_loop.new_event_loop()
    try:
        assert isinstance(getattr(loop, "_selector"), event_loop.PreciseEpollSelector)

        async def nap() -> str:
            await asyncio.sleep(0.001)
            return "woke"

        assert loop.run_until_complete(nap()) == "woke"
    finally:
        loop.close()


def test_falls_back_when_epoll_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(select, "epoll")
    loop = event_loop.new_event_loop()
    try:
        assert not isinstance(getattr(loop, "_selector", None), event_loop.PreciseEpollSelector)
    finally:
        loop.close()
