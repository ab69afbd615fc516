"""The seam between the SDK and whatever runtime serves the model.

The cogvisor worker installs a :class:`Runtime` with :func:`install` at startup; without one the SDK
works standalone (metrics are ignored, ``recycle_worker`` refuses).
"""

from __future__ import annotations

from typing import Any, Protocol


class CancelationException(BaseException):
    """Raised inside a running prediction when it is cancelled. A BaseException so ``except Exception``
    in model code does not swallow it."""


class Scope(Protocol):
    def record_metric(self, name: str, value: Any, mode: str = "replace") -> None: ...


class Runtime(Protocol):
    def current_scope(self) -> Scope: ...

    def recycle_worker(self, reason: str, rerun_setup: bool) -> None: ...


class _NullScope:
    """The scope outside any prediction: metrics go nowhere."""

    def record_metric(self, name: str, value: Any, mode: str = "replace") -> None:
        return None

    @property
    def context(self) -> dict[str, str]:
        return {}


_runtime: Runtime | None = None
_NULL_SCOPE = _NullScope()


def install(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def installed() -> Runtime | None:
    return _runtime


def current_scope() -> Any:
    """The scope of the prediction running in this context (a no-op scope outside any prediction)."""
    if _runtime is None:
        return _NULL_SCOPE
    return _runtime.current_scope()


def recycle_worker(reason: str, rerun_setup: bool = False) -> None:
    """Ask the supervisor to replace this worker process after the running predictions end."""
    if _runtime is None:
        raise RuntimeError("cog.recycle_worker() only works when the model is served by cogvisor")
    _runtime.recycle_worker(str(reason), bool(rerun_setup))
