"""The seam between the SDK and whatever runtime serves the model, and the prediction scope.

The cogvisor worker installs a :class:`Runtime` with :func:`install` at startup; without one the SDK
works standalone (metrics are ignored, ``recycle_worker`` refuses).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol


class CancelationException(BaseException):
    """Raised inside a running prediction when it is cancelled. A BaseException so ``except Exception``
    in model code does not swallow it."""


# Metric modes as the model names them -> as the wire names them.
METRIC_MODES = {"replace": "replace", "incr": "increment", "increment": "increment", "append": "append"}
MAX_METRIC_NAME = 128
MAX_METRIC_SEGMENTS = 4

# Sends one metric update: (name, JSON value or None to delete, wire mode).
MetricSink = Callable[[str, Any, str], None]

# The messages below are coglet 0.23.1's, word for word, and so is the order of the checks: a model's
# failed prediction shows the same error on both runtimes.


def _str_arg(name: str, value: Any) -> str:
    """A ``str`` argument, refused as coglet's argument conversion refuses it."""
    if not isinstance(value, str):
        raise TypeError(f"argument '{name}': '{type(value).__name__}' object cannot be cast as 'str'")
    return value


def parse_metric_mode(mode: Any) -> str:
    """The wire mode of a mode as the model names it (``None`` is ``replace``)."""
    if mode is None:
        return "replace"
    wire = METRIC_MODES.get(_str_arg("mode", mode))
    if wire is None:
        raise TypeError(f"Invalid metric mode: '{mode}'. Expected 'replace', 'incr', or 'append'.")
    return wire


def validate_metric_name(name: str, *, deleting: bool = False) -> str:
    """Cog's metric name rules; raises ValueError with coglet's message for the first rule broken.

    A delete skips only the reserved-name rules (``predict_time``, ``cog.``)."""
    if not name:
        raise ValueError("metric name must not be empty")
    if not deleting:
        if name == "predict_time":
            raise ValueError("'predict_time' is reserved by the runtime")
        if name.startswith("cog."):
            raise ValueError("the 'cog.' prefix is reserved for system metrics")
    size = len(name.encode("utf-8", "surrogatepass"))  # coglet counts UTF-8 bytes and calls them characters
    if size > MAX_METRIC_NAME:
        raise ValueError(f"metric name must be {MAX_METRIC_NAME} characters or fewer (got {size} characters)")
    segments = name.split(".")
    if len(segments) > MAX_METRIC_SEGMENTS:
        raise ValueError(
            f"metric name must have at most {MAX_METRIC_SEGMENTS} dot-separated segments (got {len(segments)})"
        )
    if name.startswith("."):
        raise ValueError("metric name must not start with a dot")
    if name.endswith("."):
        raise ValueError("metric name must not end with a dot")
    if "" in segments:
        raise ValueError("metric name must not contain empty segments (consecutive dots)")
    for seg in segments:
        _validate_segment(seg)
    return name


def _is_ascii_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def _validate_segment(seg: str) -> None:
    if not (seg[0].isascii() and seg[0].isalpha()):
        raise ValueError(f"metric name segment '{seg}' must start with a letter")
    prev = seg[0]
    for c in seg[1:]:
        if c == "_":
            if prev == "_":
                raise ValueError(f"metric name segment '{seg}' must not contain consecutive underscores")
        elif not _is_ascii_alnum(c):
            raise ValueError(f"metric name segment '{seg}' contains invalid character '{c}'")
        prev = c
    if not _is_ascii_alnum(seg[-1]):
        raise ValueError(f"metric name segment '{seg}' must end with a letter or digit")


def metric_value_type(value: Any) -> str:
    """The coarse type a metric keeps until it is deleted (bool before int: a bool is an int)."""
    for kind in (bool, int, float, str, list, dict):
        if isinstance(value, kind):
            return kind.__name__
    raise TypeError(
        f"Unsupported metric value type: {type(value).__name__}. Expected bool, int, float, str, list, or dict."
    )


def metric_json(value: Any) -> Any:
    """The JSON value of a metric, converted as coglet converts it: an int beyond 64 bits becomes a float,
    a float that is not finite becomes ``null``, lists and dicts (with ``str`` keys) all the way down."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        value = int(value)
        return value if -(2**63) <= value < 2**63 else float(value)
    if isinstance(value, float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [metric_json(v) for v in value]
    if isinstance(value, dict):
        return {_dict_key(k): metric_json(v) for k, v in value.items()}
    raise TypeError(f"Cannot convert {type(value).__name__} to JSON metric value")


def _dict_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"'{type(key).__name__}' object cannot be cast as 'str'")
    return str(key)


class MetricRecorder:
    """``current_scope().metrics``: record, delete and item access on the prediction's metrics.

    Without a sink (outside a prediction) it checks only the mode and does nothing. A metric keeps the
    type of its first value until it is deleted."""

    def __init__(self, sink: MetricSink | None = None) -> None:
        self._sink = sink
        self._types: dict[str, str] = {}

    def record(self, key: str, value: Any, mode: str | None = None) -> None:
        _str_arg("key", key)
        wire = parse_metric_mode(mode)
        if self._sink is None:
            return
        self._record(key, value, wire)

    def _record(self, key: str, value: Any, wire: str) -> None:
        assert self._sink is not None
        validate_metric_name(key)
        kind = metric_value_type(value)
        known = self._types.get(key)
        if known is not None and known != kind:
            raise TypeError(f"Metric '{key}' has type {known}, cannot set to {kind} without deleting first")
        if wire == "increment" and kind not in ("int", "float"):
            raise TypeError(f"Increment mode requires int or float, got {kind}")
        data = metric_json(value)
        self._types[key] = kind
        self._sink(key, data, wire)

    def delete(self, key: str) -> None:
        _str_arg("key", key)
        if self._sink is None:
            return
        validate_metric_name(key, deleting=True)
        self._types.pop(key, None)
        self._sink(key, None, "replace")

    def __setitem__(self, key: str, value: Any) -> None:
        _str_arg("key", key)
        if value is None:
            self.delete(key)
        elif self._sink is not None:
            self._record(key, value, "replace")

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def __repr__(self) -> str:
        if self._sink is None:
            return "MetricRecorder(inactive)"
        return f"MetricRecorder(keys={len(self._types)})"


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
        self.metrics.record(key, value, mode)

    def __repr__(self) -> str:
        return f"Scope({self.metrics!r})"


class Runtime(Protocol):
    def current_scope(self) -> Scope: ...

    def recycle_worker(self, reason: str, rerun_setup: bool) -> None: ...


_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    global _runtime
    _runtime = runtime


def installed() -> Runtime | None:
    return _runtime


def null_scope() -> Scope:
    """The scope outside any prediction: its metrics go nowhere (only a bad mode is an error, as in
    coglet)."""
    return Scope(None)


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
