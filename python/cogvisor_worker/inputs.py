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
import socket
import tempfile
import threading
import time
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
DEFAULT_DEADLINE = 600.0  # seconds for all of one prediction's downloads
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


class _Aborted(Exception):
    """A download stopped because the prediction was cancelled or ran out of time."""


def inputs_dir(runtime_dir: str) -> str:
    """Where downloaded inputs live: inside the private runtime directory, so they go with it (the
    supervisor removes it when it exits; the group guard when the supervisor is killed)."""
    return os.path.join(runtime_dir, "inputs")


def clear_stale(runtime_dir: str, generation: int) -> None:
    """Remove what earlier workers left in the inputs directory (a worker killed mid-download: SIGKILL,
    a recycle that did not wait). Each prediction's directory is named after its worker's generation;
    an earlier generation has been stopped before this one was started."""
    root = inputs_dir(runtime_dir)
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        gen, sep, _ = name.partition("-")
        if sep and gen.isdigit() and int(gen) < generation:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


class Downloader:
    """Downloads URL inputs of one prediction into its own temporary directory.

    Every download of a prediction shares one deadline (``COGVISOR_DOWNLOAD_DEADLINE``), on top of the
    stall timeout of each socket operation (``COGVISOR_DOWNLOAD_TIMEOUT``). ``abort()`` (a cancel)
    shuts the sockets down, so a download blocked in a read returns at once; the prediction is then
    told at once, whatever its download threads are still doing (a DNS lookup or a connect cannot be
    interrupted: they end within the stall timeout and find the download aborted)."""

    def __init__(
        self,
        timeout: float | None = None,
        max_bytes: int | None = None,
        opener: Callable[..., Any] | None = None,
        deadline: float | None = None,
        directory: str | None = None,
        prefix: str = "cogvisor-inputs-",
    ) -> None:
        # Every prediction gets a Downloader and most download nothing: the settings are read from the
        # environment, and the wake-up event made, only when a download starts.
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._open = opener or self._urlopen
        self._opener: urllib.request.OpenerDirector | None = None
        self.parent = directory  # None: the system temp directory (tests)
        self.prefix = prefix
        self.dir: str | None = None
        self._lock = threading.Lock()
        self._aborted: str | None = None
        self._closed = False
        self._socks: set[socket.socket] = set()
        self._wake: threading.Event | None = None

    @property
    def timeout(self) -> float:
        """The stall timeout of each socket operation (``COGVISOR_DOWNLOAD_TIMEOUT``)."""
        if self._timeout is None:
            self._timeout = _env_float("COGVISOR_DOWNLOAD_TIMEOUT", DEFAULT_TIMEOUT)
        return self._timeout

    @property
    def max_bytes(self) -> int:
        """The largest input downloaded (``COGVISOR_MAX_DOWNLOAD_BYTES``)."""
        if self._max_bytes is None:
            self._max_bytes = _env_int("COGVISOR_MAX_DOWNLOAD_BYTES", DEFAULT_MAX_BYTES)
        return self._max_bytes

    @property
    def deadline(self) -> float:
        """One deadline for all of a prediction's downloads (``COGVISOR_DOWNLOAD_DEADLINE``)."""
        if self._deadline is None:
            self._deadline = _env_float("COGVISOR_DOWNLOAD_DEADLINE", DEFAULT_DEADLINE)
        return self._deadline

    # -- the prediction's directory ---------------------------------------------------------------
    def _tempdir(self) -> str:
        with self._lock:  # parallel downloads share one directory
            if self._closed or self._aborted is not None:
                raise _Aborted(self._aborted or "cleaned up")
            if self.dir is None:
                if self.parent is not None:
                    os.makedirs(self.parent, mode=0o700, exist_ok=True)
                self.dir = tempfile.mkdtemp(prefix=self.prefix, dir=self.parent)
            return self.dir

    def cleanup(self) -> None:
        """Stop every download and remove the directory (when the prediction ends)."""
        self.abort("the prediction ended")
        with self._lock:
            self._closed = True
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
                self.dir = None

    # -- aborting ---------------------------------------------------------------------------------
    def abort(self, reason: str) -> None:
        """Stop the downloads: sockets shut down, waiting ``download_all`` returns. Any thread may call it."""
        with self._lock:
            if self._aborted is None:
                self._aborted = reason
            socks, self._socks = list(self._socks), set()
        for sock in socks:
            _shutdown(sock)
        wake = self._wake
        if wake is not None:
            wake.set()

    def _register(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            if self._aborted is None:
                self._socks.add(sock)
                return sock
        _shutdown(sock)
        return sock

    def _check(self) -> None:
        if self._aborted is not None:
            raise _Aborted(self._aborted)

    def _urlopen(self, req: urllib.request.Request, timeout: float) -> Any:
        if self._opener is None:
            self._opener = urllib.request.build_opener(_Http(self), _Https(self))
        return self._opener.open(req, timeout=timeout)

    # -- downloading ------------------------------------------------------------------------------
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
                self._check()
                kind = "Client" if e.code < 500 else "Server"
                raise InputError(f"Input validation error: {e.code} {kind} Error: {e.reason} for url: {url}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                self._check()
                reason = getattr(e, "reason", e)
                raise InputError(f"Input validation error: cannot download {url}: {reason}") from None
            with resp:
                read = getattr(resp, "read1", None) or resp.read
                total = 0
                try:
                    while True:
                        self._check()
                        chunk = read(CHUNK)
                        if not chunk:
                            break
                        total += len(chunk)
                        if total > self.max_bytes:
                            raise InputError(
                                f"Input validation error: {url} is larger than the limit of {self.max_bytes} bytes"
                            )
                        f.write(chunk)
                except (OSError, http.client.HTTPException) as e:
                    self._check()
                    raise InputError(f"Input validation error: download of {url} failed: {e}") from None
                self._check()  # a shut-down socket reads as the end of the body
        return cog.Path(path)

    def download_all(self, urls: list[str]) -> dict[str, cog.Path]:
        """Download every distinct URL in parallel, within the deadline. The first failure in request order
        is raised (a failure stops the other downloads); a cancel or the deadline raises at once."""
        unique = list(dict.fromkeys(urls))
        if not unique:
            return {}
        self._check()
        pool = concurrent.futures.ThreadPoolExecutor(
            min(DOWNLOAD_WORKERS, len(unique)), thread_name_prefix="cogvisor-download"
        )
        # Made before the loop's first look at `_aborted`: an abort from then on wakes it.
        wake = self._wake = threading.Event()
        try:
            futures = {u: pool.submit(self.download, u) for u in unique}
            for future in futures.values():
                future.add_done_callback(lambda _f: wake.set())
            ends_at = time.monotonic() + self.deadline
            while True:
                wake.clear()
                if self._aborted is not None:
                    break
                if all(f.done() for f in futures.values()):
                    break
                if any(f.done() and f.exception() is not None for f in futures.values()):
                    self.abort("another input failed")
                    break
                left = ends_at - time.monotonic()
                if left <= 0:
                    late = [u for u, f in futures.items() if not f.done()]
                    self.abort("deadline")
                    raise InputError(
                        f"Input validation error: download of {late[0]} did not finish within "
                        f"{self.deadline:g} s (COGVISOR_DOWNLOAD_DEADLINE)"
                    )
                wake.wait(left)
            for future in futures.values():  # the first real failure, in request order
                if future.done():
                    e = future.exception()
                    if e is not None and not isinstance(e, _Aborted):
                        raise e
            self._check()
            return {u: f.result() for u, f in futures.items()}
        finally:
            pool.shutdown(wait=False, cancel_futures=True)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed, or never connected
        pass


class _Http(urllib.request.HTTPHandler):
    """urllib's HTTP handler, with connections whose sockets a Downloader can shut down."""

    def __init__(self, downloader: Downloader) -> None:
        super().__init__()
        self._downloader = downloader

    def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:  # type: ignore[override]
        return super().do_open(_connection_class(http_class, self._downloader), req, **kw)


class _Https(urllib.request.HTTPSHandler):
    def __init__(self, downloader: Downloader) -> None:
        super().__init__()
        self._downloader = downloader

    def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:  # type: ignore[override]
        return super().do_open(_connection_class(http_class, self._downloader), req, **kw)


def _connection_class(base: Any, downloader: Downloader) -> Any:
    """``base`` (http.client's HTTP or HTTPS connection) registering each socket it connects: the TCP
    socket as soon as it exists (a TLS handshake can be aborted too), the TLS socket after it."""

    class Connection(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            create = self._create_connection
            self._create_connection = lambda *a, **k: downloader._register(create(*a, **k))

        def connect(self) -> None:
            super().connect()
            if self.sock is not None:
                downloader._register(self.sock)

    return Connection


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
