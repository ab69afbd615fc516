"""Input and output types of the SDK, with Cog's names."""

from __future__ import annotations

import dataclasses
import io
import mimetypes
import os
import pathlib
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any, Generic, TypeVar


class _Missing:
    def __repr__(self) -> str:
        return "<required>"


MISSING: Any = _Missing()

T = TypeVar("T")


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
    default_factory: Any = None,
) -> Any:
    """Declare an input's default and constraints: ``def run(self, n: int = Input(default=1, ge=0))``."""
    if default_factory is not None:
        raise TypeError("cog.Input() does not support default_factory; use default=")
    if choices is not None and not isinstance(choices, (list, tuple)):
        raise TypeError(f"cog.Input(choices=...) must be a list, got {type(choices).__name__}")
    return FieldInfo(
        default,
        description=description,
        ge=ge,
        le=le,
        min_length=min_length,
        max_length=max_length,
        regex=regex,
        choices=list(choices) if choices is not None else None,
        deprecated=deprecated,
        accept=accept,
    )


class Path(pathlib.PosixPath):
    """A file input or output. URL inputs arrive downloaded to a local temporary file."""


class URLPath(Path):
    """A ``Path`` input given as a URL, not downloaded yet: the runtime downloads it before the model
    runs (:func:`cogvisor_worker.inputs`) and the model receives a plain :class:`Path`."""

    def __new__(cls, url: str, *args: Any, **kwargs: Any) -> "URLPath":
        self = super().__new__(cls, url_filename(url))
        self.url = url  # type: ignore[attr-defined]
        return self

    def __init__(self, url: str, *args: Any, **kwargs: Any) -> None:
        if hasattr(pathlib.PurePath, "_raw_paths"):  # Python >= 3.12 initialises paths in __init__
            super().__init__(url_filename(url))  # type: ignore[call-arg]
        self.url = url

    def __reduce__(self) -> Any:
        return (URLPath, (self.url,))

    def __repr__(self) -> str:
        return f"URLPath({self.url!r})"


def url_filename(url: str) -> str:
    """The file name a URL input gets: its basename (unquoted, at most 200 bytes), or ``file.<ext>``
    for a data URL."""
    if url.startswith("data:"):
        mime = url[5:].split(",", 1)[0].split(";", 1)[0] or "text/plain"
        ext = mimetypes.guess_extension(mime) or ""
        return "file" + ext
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path)) or "file"
    name = name.replace("/", "_").replace("\x00", "_")
    raw = name.encode("utf-8")
    if len(raw) > 200:
        stem, ext = os.path.splitext(name)
        keep = 200 - len(ext.encode("utf-8")) - 1
        name = stem.encode("utf-8")[:keep].decode("utf-8", "ignore") + "~" + ext
    return name


class File(io.IOBase):
    """A file-like input or output (deprecated in Cog in favour of :class:`Path`)."""


class URLFile(io.IOBase):
    """A lazy HTTP(S) file: the URL is opened on first read. Picklable (it pickles as its URL)."""

    def __init__(self, url: str, filename: str | None = None, timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self.name = filename or url_filename(url)
        self._timeout = timeout
        self._response: Any = None

    def _open(self) -> Any:
        if self._response is None:
            req = urllib.request.Request(self.url)
            agent = os.environ.get("COG_USER_AGENT")
            if agent:
                req.add_header("User-Agent", agent)
            self._response = urllib.request.urlopen(req, timeout=self._timeout)  # noqa: S310
        return self._response

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return bytes(self._open().read(None if size is None or size < 0 else size))

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        super().close()

    def __reduce__(self) -> Any:
        return (URLFile, (self.url, self.name))

    def __repr__(self) -> str:
        return f"URLFile({self.url!r})"


class Secret:
    """A string that never shows its value in reprs or logs: ``get_secret_value()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, secret_value: str | None = None) -> None:
        self._value = secret_value

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


class ConcatenateIterator(Iterator[T], Generic[T]):
    """Return annotation of a token stream: ``-> ConcatenateIterator[str]``. At run time the model
    returns an ordinary generator; the schema marks the output for concatenated display."""

    def __next__(self) -> T:  # pragma: no cover - a typing marker, never instantiated by the runtime
        raise StopIteration


class AsyncConcatenateIterator(AsyncIterator[T], Generic[T]):
    """The async counterpart of :class:`ConcatenateIterator`: ``-> AsyncConcatenateIterator[str]``."""

    async def __anext__(self) -> T:  # pragma: no cover - a typing marker
        raise StopAsyncIteration


class BaseModel:
    """Structured outputs: subclasses become dataclasses (``auto_dataclass=False`` opts out) and are
    returned as JSON objects."""

    def __init_subclass__(cls, *, auto_dataclass: bool = True, init: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if auto_dataclass:
            dataclasses.dataclass(init=init)(cls)


class Opaque:
    """Marker for ``Annotated[T, Opaque]``: the value passes through as it is; its schema is
    ``{"type": "object"}`` (an array of those for a list), as ``cog build`` writes it."""
