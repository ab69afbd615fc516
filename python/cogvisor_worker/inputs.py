"""Turning a prediction's JSON input into the model's keyword arguments.

Coercion follows the parameter annotations, as Cog does: ``cog.Path`` (also in lists and Optionals)
values given as ``http(s)://`` or ``data:`` URLs are downloaded in parallel to temporary files before
the model runs; ``cog.File`` values become ``BytesIO`` (data URLs) or lazy ``URLFile``\\s; ``cog.Secret``
values are wrapped; ``float`` parameters get floats. Other strings pass through unchanged (a file path
string stays a ``str``, as in Cog). The temporary files live in one directory per prediction, removed
when the prediction ends.
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import http.client
import inspect
import io
import os
import shutil
import tempfile
import threading
import types
import typing
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

import cog
from cog.types import url_filename

from . import schema

DOWNLOAD_WORKERS = 8
DEFAULT_TIMEOUT = 10.0  # seconds without progress on one connection
DEFAULT_MAX_BYTES = 10 * 1024 * 1024 * 1024  # 10 GiB per file
CHUNK = 1024 * 1024


class InputError(Exception):
    """An input could not be prepared (a download failed, a data URL is malformed). The message is the
    prediction's error."""


@dataclasses.dataclass(frozen=True)
class Coercion:
    """How one parameter's JSON value becomes the model's argument."""

    kind: str  # "path", "file", "secret", "float", "none"
    many: bool = False  # a list of that kind


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _unwrap(args[0])
    return tp


def _scalar_kind(tp: Any) -> str:
    if inspect.isclass(tp):
        if issubclass(tp, cog.Secret):
            return "secret"
        if issubclass(tp, cog.Path):
            return "path"
        if issubclass(tp, io.IOBase):
            return "file"
        if tp is float:
            return "float"
    return "none"


def coercion_for(tp: Any) -> Coercion | None:
    """The coercion of an annotation, or None when the value passes through unchanged."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) is list or tp is list:
        args = typing.get_args(tp)
        kind = _scalar_kind(_unwrap(args[0])) if args else "none"
        if kind in ("path", "file", "float"):
            return Coercion(kind, many=True)
        return None
    kind = _scalar_kind(tp)
    return None if kind == "none" else Coercion(kind)


def coercions(fn: Callable[..., Any]) -> dict[str, Coercion]:
    """Parameter name -> coercion, for the parameters that need one."""
    hints, _ = schema.resolve_hints(fn)  # the schema builder reports unresolvable annotations
    out: dict[str, Coercion] = {}
    for name, hint in hints.items():
        if name == "return":
            continue
        c = coercion_for(hint)
        if c is not None:
            out[name] = c
    return out


def is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://", "data:"))


def decode_data_url(url: str) -> bytes:
    """The bytes of a ``data:`` URL (base64 or percent-encoded)."""
    header, sep, data = url[5:].partition(",")
    if not sep:
        raise InputError(f"Input validation error: malformed data URL {url[:64]!r}: no comma")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(data, validate=False)
        return urllib.parse.unquote_to_bytes(data)
    except ValueError as e:
        raise InputError(f"Input validation error: malformed data URL {url[:64]!r}: {e}") from e


class Downloader:
    """Downloads URL inputs of one prediction into its own temporary directory."""

    def __init__(
        self,
        timeout: float | None = None,
        max_bytes: int | None = None,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        self.timeout = timeout if timeout is not None else _env_float("COGVISOR_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT)
        self.max_bytes = max_bytes if max_bytes is not None else _env_int("COGVISOR_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_BYTES)
        self._open = opener or urllib.request.urlopen
        self.dir: str | None = None
        self._lock = threading.Lock()

    def _tempdir(self) -> str:
        with self._lock:  # parallel downloads share one directory
            if self.dir is None:
                self.dir = tempfile.mkdtemp(prefix="cogvisor-inputs-")
            return self.dir

    def cleanup(self) -> None:
        with self._lock:
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    def _target(self, url: str) -> tuple[int, str]:
        return tempfile.mkstemp(suffix=url_filename(url), dir=self._tempdir())

    def download(self, url: str) -> cog.Path:
        """Fetch one URL into a new temporary file and return its path."""
        fd, path = self._target(url)
        with os.fdopen(fd, "wb") as f:
            if url.startswith("data:"):
                data = decode_data_url(url)
                if len(data) > self.max_bytes:
                    raise InputError(f"Input validation error: {url[:64]}...: larger than {self.max_bytes} bytes")
                f.write(data)
                return cog.Path(path)
            req = urllib.request.Request(url)
            agent = os.environ.get("COG_USER_AGENT")
            if agent:
                req.add_header("User-Agent", agent)
            try:
                resp = self._open(req, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                kind = "Client" if e.code < 500 else "Server"
                raise InputError(f"Input validation error: {e.code} {kind} Error: {e.reason} for url: {url}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                reason = getattr(e, "reason", e)
                raise InputError(f"Input validation error: cannot download {url}: {reason}") from None
            with resp:
                total = 0
                try:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise InputError(
                                f"Input validation error: {url} is larger than the limit of {self.max_bytes} bytes"
                            )
                        f.write(chunk)
                except (OSError, http.client.HTTPException) as e:
                    raise InputError(f"Input validation error: download of {url} failed: {e}") from None
        return cog.Path(path)

    def download_all(self, urls: list[str]) -> dict[str, cog.Path]:
        """Download every distinct URL in parallel; the first failure (in request order) is raised."""
        unique = list(dict.fromkeys(urls))
        if not unique:
            return {}
        with concurrent.futures.ThreadPoolExecutor(min(DOWNLOAD_WORKERS, len(unique)), thread_name_prefix="cogvisor-download") as pool:
            futures = {u: pool.submit(self.download, u) for u in unique}
            return {u: f.result() for u, f in futures.items()}


def _env_float(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, ""))
        return value if value > 0 else default
    except ValueError:
        return default


def _env_int(name: str, default: int) -> int:
    try:
        value = int(os.environ.get(name, ""))
        return value if value > 0 else default
    except ValueError:
        return default


def _file_value(value: Any, downloader: Downloader) -> Any:
    if not isinstance(value, str):
        return value
    if value.startswith("data:"):
        buf = io.BytesIO(decode_data_url(value))
        buf.name = url_filename(value)  # type: ignore[attr-defined]
        return buf
    if value.startswith(("http://", "https://")):
        return cog.URLFile(value, timeout=downloader.timeout)
    return value


def _float_value(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def prepare(raw: dict[str, Any], coerce: dict[str, Coercion], downloader: Downloader) -> dict[str, Any]:
    """The keyword arguments for the model. URL ``Path`` inputs are downloaded (in parallel) here."""
    kwargs: dict[str, Any] = dict(raw)
    urls: list[str] = []
    for name, c in coerce.items():
        if c.kind != "path" or name not in kwargs:
            continue
        values = kwargs[name] if c.many and isinstance(kwargs[name], list) else [kwargs[name]]
        urls.extend(v for v in values if is_url(v))
    fetched = downloader.download_all(urls)
    for name, c in coerce.items():
        if name not in kwargs or kwargs[name] is None:
            continue
        value = kwargs[name]
        if c.kind == "secret":
            kwargs[name] = cog.Secret(value) if isinstance(value, str) else value
        elif c.kind == "path":
            one: Callable[[Any], Any] = lambda v: fetched[v] if is_url(v) else v  # noqa: E731
            kwargs[name] = [one(v) for v in value] if c.many and isinstance(value, list) else one(value)
        elif c.kind == "file":
            kwargs[name] = (
                [_file_value(v, downloader) for v in value]
                if c.many and isinstance(value, list)
                else _file_value(value, downloader)
            )
        elif c.kind == "float":
            kwargs[name] = [_float_value(v) for v in value] if c.many and isinstance(value, list) else _float_value(value)
    return kwargs
