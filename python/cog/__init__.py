"""The Cog SDK as cogvisor serves it: the names ``import cog`` gives a Cog model."""

from __future__ import annotations

import sys
import warnings
from typing import Any

from ._runtime import CancelationException, MetricRecorder, Scope, current_scope, recycle_worker
from .predictor import BasePredictor, BaseRunner, concurrent, streaming
from .types import (
    AsyncConcatenateIterator,
    BaseModel,
    ConcatenateIterator,
    FieldInfo,
    File,
    Input,
    Opaque,
    Path,
    Secret,
    URLFile,
    URLPath,
)

# The Cog version cogvisor is compatible with (COG_VERSION in crates/server/src/version.rs; tests check
# that the two agree). cogvisor's own version is `cogvisor --version` and GET / `cogvisor_version`.
__version__ = "0.23.1"


class ExperimentalFeatureWarning(Warning):
    """Kept for models that filter it; cogvisor raises no experimental-feature warnings."""


_emit_metric_warned = False


def emit_metric(name: str, value: Any) -> None:
    """Deprecated: use ``current_scope().record_metric(name, value)``."""
    global _emit_metric_warned
    if not _emit_metric_warned:
        _emit_metric_warned = True
        print(
            "cog.emit_metric() is deprecated and will be removed; use cog.current_scope().record_metric()",
            file=sys.stderr,
        )
    current_scope().record_metric(name, value)


def record_metric(key: str, value: Any, mode: str = "replace") -> None:
    """Record a metric on the running prediction (a no-op outside one)."""
    current_scope().record_metric(key, value, mode=mode)


warnings.filterwarnings("default", category=ExperimentalFeatureWarning)

__all__ = [
    "AsyncConcatenateIterator",
    "BaseModel",
    "BasePredictor",
    "BaseRunner",
    "CancelationException",
    "ConcatenateIterator",
    "ExperimentalFeatureWarning",
    "FieldInfo",
    "File",
    "Input",
    "MetricRecorder",
    "Opaque",
    "Path",
    "Scope",
    "Secret",
    "URLFile",
    "URLPath",
    "__version__",
    "concurrent",
    "current_scope",
    "emit_metric",
    "record_metric",
    "recycle_worker",
    "streaming",
]
