"""Base classes for models."""

from __future__ import annotations

from typing import Any

from ._runtime import current_scope


class BasePredictor:
    """Base class of a Cog model: override ``setup()`` and define ``predict()`` (or ``run()``)."""

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load weights and other expensive state once per worker."""
        return None

    @property
    def scope(self) -> Any:
        """The scope of the prediction running in this context."""
        return current_scope()

    def record_metric(self, name: str, value: Any, mode: str = "replace") -> None:
        """Record a metric on the running prediction."""
        current_scope().record_metric(name, value, mode=mode)


class BaseRunner(BasePredictor):
    """The newer name of :class:`BasePredictor`; define ``run()``."""
