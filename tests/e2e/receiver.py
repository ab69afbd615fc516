"""A local HTTP receiver for webhook and upload tests: a `ThreadingHTTPServer` in a thread that records
every request and answers from a script.

`Receiver.script` maps a request to an answer: a callable `(Request) -> int | None` (None: the default
answer); the default is 200 for POST and 201 with a `Location` header for PUT. Standard library only.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from helpers import wait_for


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, script: Callable[[Request], int | None] | None = None) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.script = script
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = Request(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    at=time.monotonic(),
                )
                with receiver.lock:
                    receiver.requests.append(req)
                    status = receiver.script(req) if receiver.script else None
                extra: dict[str, str] = {}
                if status is None:
                    if self.command == "PUT":
                        status = 201
                        extra["Location"] = f"http://127.0.0.1:{receiver.port}/stored{self.path}?sig=secret"
                    else:
                        status = 200
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = _handle
            do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def got(self, method: str | None = None) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if method is None or r.method == method]

    def webhooks(self) -> list[dict]:
        return [r.json() for r in self.got("POST")]

    def wait_terminal(self, timeout: float = 30) -> list[dict]:
        """Waits until a webhook with a terminal status has arrived; returns every webhook body so far."""

        def done():
            return any(w.get("status") in ("succeeded", "failed", "canceled") for w in self.webhooks())

        wait_for(done, timeout=timeout, what="a terminal webhook")
        return self.webhooks()
