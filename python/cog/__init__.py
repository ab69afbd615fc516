"""Minimal Cog SDK for models served by cogvisor."""

from __future__ import annotations

from ._runtime import CancelationException, current_scope, recycle_worker
from .predictor import BasePredictor, BaseRunner
from .types import FieldInfo, Input, Path, Secret

__version__ = "0.1.0"

__all__ = [
    "BasePredictor",
    "BaseRunner",
    "CancelationException",
    "FieldInfo",
    "Input",
    "Path",
    "Secret",
    "__version__",
    "current_scope",
    "recycle_worker",
]
