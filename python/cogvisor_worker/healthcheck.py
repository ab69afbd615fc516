"""Running the model's ``healthcheck()`` off the control loop, with a timeout."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import os
import threading
from typing import TYPE_CHECKING, Any

from . import protocol

if TYPE_CHECKING:
    from .worker import Worker



def _timeout_from_env(default: float = 5.0) -> float:
    """The supervisor's ``health.timeout`` (COGVISOR_HEALTHCHECK_TIMEOUT, seconds), else Cog's 5 s."""
    raw = os.environ.get("COGVISOR_HEALTHCHECK_TIMEOUT", "")
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value > 0 else default


HEALTHCHECK_TIMEOUT = _timeout_from_env()


class _Timeout(Exception):
    pass


def _call(worker: "Worker", fn: Any) -> Any:
    """Call ``fn`` in a daemon thread (sync) or on the event loop (async); raise _Timeout after 5 s."""
    if inspect.iscoroutinefunction(fn):
        return _await(worker, fn(), HEALTHCHECK_TIMEOUT)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported as unhealthy
            box["error"] = e

    t = threading.Thread(target=target, name="cogvisor-healthcheck", daemon=True)
    t.start()
    t.join(HEALTHCHECK_TIMEOUT)
    if t.is_alive():
        raise _Timeout()
    if "error" in box:
        raise box["error"]
    result = box.get("result")
    if inspect.isawaitable(result):
        return _await(worker, result, HEALTHCHECK_TIMEOUT)
    return result


def _await(worker: "Worker", awaitable: Any, timeout: float) -> Any:
    async def run() -> Any:
        return await awaitable

    future = asyncio.run_coroutine_threadsafe(run(), worker.loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise _Timeout() from None


def run_healthcheck(worker: "Worker", hc_id: str) -> protocol.Message:
    model = worker.model
    fn = model.healthcheck() if model is not None else None
    if fn is None:
        return protocol.healthcheck_result(hc_id, "healthy")
    try:
        result = _call(worker, fn)
    except _Timeout:
        return protocol.healthcheck_result(
            hc_id, "unhealthy", f"user-defined healthcheck timed out after {HEALTHCHECK_TIMEOUT} seconds"
        )
    except BaseException as e:  # noqa: BLE001
        return protocol.healthcheck_result(hc_id, "unhealthy", f"{type(e).__name__}: {e}")
    if result is False:
        return protocol.healthcheck_result(hc_id, "unhealthy", "user-defined healthcheck returned False")
    return protocol.healthcheck_result(hc_id, "healthy")


def start(worker: "Worker", hc_id: str) -> None:
    """Answer ``healthcheck {id}`` from a background thread."""

    def answer() -> None:
        worker.control.try_send(run_healthcheck(worker, hc_id))

    threading.Thread(target=answer, name="cogvisor-healthcheck-answer", daemon=True).start()
