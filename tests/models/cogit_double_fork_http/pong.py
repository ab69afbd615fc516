"""Forks; the child serves GET /ping on $PONG_PORT (printing for every request), the parent prints
every few seconds."""

import os
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server


def app(environ, start_response):
    print(f"---> CHILD ({os.getpid()})", flush=True)
    if environ["PATH_INFO"] == "/ping":
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"PONG\n" for _ in range(100)]
    start_response("404 Not Found", [("content-type", "text/plain")])
    return [b"NO\n"]


def main() -> None:
    if os.fork() == 0:
        make_server("127.0.0.1", int(os.environ["PONG_PORT"]), app, handler_class=WSGIRequestHandler).serve_forever()
    else:
        while True:
            print(f"===> PARENT ({os.getpid()})", flush=True)
            time.sleep(5)


if __name__ == "__main__":
    main()
