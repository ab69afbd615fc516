"""The minimal cog SDK, used outside the worker."""

from __future__ import annotations

import pathlib

import pytest

import cog
from cog import _runtime


def test_version_and_exports() -> None:
    assert cog.__version__ == "0.23.1"
    assert issubclass(cog.BaseRunner, cog.BasePredictor)
    assert issubclass(cog.CancelationException, BaseException)
    assert not issubclass(cog.CancelationException, Exception)


def test_input_holds_constraints() -> None:
    field = cog.Input(default=3, description="n", ge=0, le=10, choices=[1, 3])
    assert (field.default, field.description, field.ge, field.le, field.choices) == (3, "n", 0, 10, [1, 3])
    assert cog.Input().required and not field.required


def test_path_and_secret() -> None:
    assert isinstance(cog.Path("/tmp/x.png"), pathlib.PosixPath)
    s = cog.Secret("hunter2")
    assert str(s) == "**********" and "hunter2" not in repr(s)
    assert s.get_secret_value() == "hunter2"


def test_outside_the_worker() -> None:
    assert _runtime.installed() is None
    with pytest.raises(RuntimeError, match="only works when the model is served by cogvisor"):
        cog.recycle_worker("why")
    cog.current_scope().record_metric("x", 1)  # a no-op outside a prediction
    cog.BasePredictor().record_metric("x", 1, mode="incr")
