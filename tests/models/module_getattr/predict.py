"""The predictor class is produced on demand by a module-level __getattr__ (PEP 562)."""

from typing import Any

from cog import BasePredictor


class _Lazy(BasePredictor):
    def predict(self, text: str = "world") -> str:
        return f"getattr {text}"


def __getattr__(name: str) -> Any:
    if name == "Pred" + "ictor":
        return _Lazy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
