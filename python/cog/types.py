"""Input and output types of the SDK."""

from __future__ import annotations

import pathlib
from typing import Any


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


MISSING: Any = _Missing()


class FieldInfo:
    """What ``Input(...)`` returns: the default and constraints of one input."""

    def __init__(
        self,
        default: Any = MISSING,
        *,
        description: str | None = None,
        ge: float | None = None,
        le: float | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        regex: str | None = None,
        choices: list[Any] | None = None,
        deprecated: bool | None = None,
        accept: str | None = None,
    ) -> None:
        self.default = default
        self.description = description
        self.ge = ge
        self.le = le
        self.min_length = min_length
        self.max_length = max_length
        self.regex = regex
        self.choices = choices
        self.deprecated = deprecated
        self.accept = accept

    @property
    def required(self) -> bool:
        return self.default is MISSING

    def __repr__(self) -> str:
        return f"Input(default={self.default!r}, description={self.description!r})"


def Input(  # noqa: N802 - the SDK's public name
    default: Any = MISSING,
    *,
    description: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    regex: str | None = None,
    choices: list[Any] | None = None,
    deprecated: bool | None = None,
    accept: str | None = None,
) -> Any:
    """Declare an input's default and constraints: ``def predict(self, n: int = Input(default=1, ge=0))``."""
    return FieldInfo(
        default,
        description=description,
        ge=ge,
        le=le,
        min_length=min_length,
        max_length=max_length,
        regex=regex,
        choices=choices,
        deprecated=deprecated,
        accept=accept,
    )


class Path(pathlib.PosixPath):
    """A file input or output."""


class Secret:
    """A string that never shows its value in reprs or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None = None) -> None:
        self._value = value

    def get_secret_value(self) -> str | None:
        return self._value

    def __str__(self) -> str:
        return "**********" if self._value is not None else ""

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value is not None else "Secret(None)"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
