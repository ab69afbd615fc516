"""The seam between the SDK and whatever runtime serves the model, and the prediction scope.

The cogvisor worker installs a :class:`Runtime` with :func:`install` at startup; without one the SDK
works standalone (metrics are ignored, ``recycle_worker`` refuses).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Protocol


class CancelationException(BaseException):
    """Raised inside a running prediction when it is cancelled. A BaseException so ``except Exception``
    in model code does not swallow it."""


# Metric modes as the model names them -> as the wire names them.
METRIC_MODES = {"replace": "replace", "incr": "increment", "increment": "increment", "append": "append"}
MAX_METRIC_NAME = 128
MAX_METRIC_SEGMENTS = 4
_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_VALUE_TYPES = (bool, int, float, str, list, dict)

# Sends one metric update: (name, value or None to delete, wire mode).
MetricSink = Callable[[str, Any, str], None]


def validate_metric_name(name: Any) -> str:
    """Cog's metric name rules; raises ValueError/TypeError naming the bad name."""
    if not isinstance(name, str):
        raise TypeError(f"Metric name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("Metric name must not be empty")
    if len(name) > MAX_METRIC_NAME:
        raise ValueError(f"Metric name {name!r} is longer than {MAX_METRIC_NAME} characters")
    if name == "predict_time" or name.startswith("cog."):
        raise ValueError(f"Metric name {name!r} is reserved")
    segments = name.split(".")
    if len(segments) > MAX_METRIC_SEGMENTS:
        raise ValueError(f"Metric name {name!r} has more than {MAX_METRIC_SEGMENTS} dot-separated segments")
    for seg in segments:
        if not seg:
            raise ValueError(f"Metric name {name!r} has an empty segment")
        if not _SEGMENT.fullmatch(seg):
            raise ValueError(
                f"Metric name {name!r}: segment {seg!r} must start with a letter and contain only "
                "letters, digits and underscores"
            )
        if seg.endswith("_") or "__" in seg:
            raise ValueError(
                f"Metric name {name!r}: segment {seg!r} must not have trailing or double underscores"
            )
    return name


class MetricRecorder:
    """``current_scope().metrics``: record, delete and item access on the prediction's metrics.

    A metric keeps the type of its first value until it is deleted."""

    def __init__(self, sink: MetricSink | None = None) -> None:
        self._sink = sink
        self._types: dict[str, type] = {}

    def record(self, key: str, value: Any, mode: str = "replace") -> None:
        if mode is None:
            mode = "replace"
        if mode not in METRIC_MODES:
            raise TypeError(f"Invalid metric mode {mode!r}: expected replace, incr, increment or append")
        validate_metric_name(key)
        if value is None:
            raise TypeError(f"Metric {key!r}: value must not be None (use delete() to remove a metric)")
        if not isinstance(value, _VALUE_TYPES):
            raise TypeError(
                f"Metric {key!r}: value of type {type(value).__name__} is not one of bool, int, float, str, "
                "list or dict"
            )
        wire = METRIC_MODES[mode]
        if wire == "increment" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TypeError(f"Metric {key!r}: incr needs an int or float value, got {type(value).__name__}")
        kind = list if wire == "append" else type(value)
        known = self._types.get(key)
        if known is not None and known is not kind:
            raise TypeError(
                f"Metric {key!r} has type {known.__name__}, cannot set to {kind.__name__} without deleting first"
            )
        self._types[key] = kind
        if self._sink is not None:
            self._sink(key, value, wire)

    def delete(self, key: str) -> None:
        validate_metric_name(key)
        self._types.pop(key, None)
        if self._sink is not None:
            self._sink(key, None, "replace")

    def __setitem__(self, key: str, value: Any) -> None:
        if value is None:
            self.delete(key)
        else:
            self.record(key, value, "replace")

    def __delitem__(self, key: str) -> None:
        self.delete(key)


class Scope:
    """What ``current_scope()`` returns: the running prediction's metrics and context."""

    def __init__(self, sink: MetricSink | None = None, context: dict[str, str] | None = None) -> None:
        self.metrics = MetricRecorder(sink)
        self._context = dict(context or {})

    @property
    def context(self) -> dict[str, str]:
        """The request's ``context`` (a fresh copy each time)."""
        return dict(self._context)

    def record_metric(self, key: str, value: Any, mode: str | None = None) -> None:
        self.metrics.record(key, value, mode or "replace")


class Runtime(Protocol):
    def current_scope(self) -> Scope: ...

    def recycle_worker(self, reason: str, rerun_setup: bool) -> None: ...


class _NullScope(Scope):
    """The scope outside any prediction: ``record_metric`` does nothing, ``metrics`` go nowhere."""

    def record_metric(self, key: str, value: Any, mode: str | None = None) -> None:
        return None


_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def installed() -> Runtime | None:
    return _runtime


def null_scope() -> Scope:
    return _NullScope()


def current_scope() -> Scope:
    """The scope of the prediction running in this context (a no-op scope outside any prediction)."""
    if _runtime is None:
        return null_scope()
    return _runtime.current_scope()


def recycle_worker(reason: str, rerun_setup: bool = False) -> None:
    """Ask the supervisor to replace this worker process after the running predictions end."""
    if _runtime is None:
        raise RuntimeError("cog.recycle_worker() only works when the model is served by cogvisor")
    _runtime.recycle_worker(str(reason), bool(rerun_setup))
