"""Base classes and decorators for models."""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from ._runtime import Scope, current_scope

F = TypeVar("F", bound=Callable[..., Any])


class BasePredictor:
    """Base class of a Cog model: override ``setup()`` and define ``run()`` (or ``predict()``)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load weights and other expensive state once per worker. May take a ``weights`` argument."""
        return None

    @property
    def scope(self) -> Scope:
        """The scope of the prediction running in this context."""
        return current_scope()

    def record_metric(self, key: str, value: Any, mode: str = "replace") -> None:
        """Record a metric on the running prediction (a no-op outside one)."""
        current_scope().record_metric(key, value, mode=mode)


class BaseRunner(BasePredictor):
    """The newer name of :class:`BasePredictor`; define ``run()``."""


def streaming(fn: Any = None) -> Any:
    """``@cog.streaming`` or ``@cog.streaming()``: the model supports SSE streaming (schema flag
    ``x-cog-streaming``); nothing changes at run time."""

    def mark(f: F) -> F:
        try:
            f.__cog_streaming__ = True  # type: ignore[attr-defined]
        except AttributeError as e:
            raise TypeError(f"@cog.streaming cannot mark {f!r}") from e
        return f

    if fn is None:
        return mark
    if not callable(fn):
        raise TypeError(f"@cog.streaming takes no arguments, got {fn!r}")
    return mark(fn)


def concurrent(fn: Any = None, *, max: int = 1) -> Any:  # noqa: A002 - Cog's parameter name
    """``@cog.concurrent(max=N)``: the model handles N predictions at once (async methods only).

    cogvisor reads the literal N from the source when neither ``COG_MAX_CONCURRENCY`` nor
    ``concurrency.max`` sets the slot count."""
    if isinstance(max, bool) or not isinstance(max, int) or max < 1:
        raise ValueError(f"@cog.concurrent(max=...) must be an integer >= 1, got {max!r}")

    def mark(f: F) -> F:
        func = getattr(f, "__func__", f)
        if max > 1 and not (inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)):
            raise TypeError(
                f"@cog.concurrent(max={max}) needs an async function, but {getattr(func, '__name__', f)!r} is not"
            )
        f.__cog_concurrent_max__ = max  # type: ignore[attr-defined]
        return f

    if fn is None:
        return mark
    return mark(fn)
