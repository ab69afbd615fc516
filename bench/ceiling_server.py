"""The machine's ceiling for the "async sleep 50 ms" scenario: a bare HTTP/1.1 server that does nothing
but sleep.

One thread per connection, `time.sleep` (clock_nanosleep: microsecond-accurate), no JSON parsing beyond
reading `seconds`, no supervisor, no IPC. What it reaches under the same wrk load is the most any server
can reach on this machine, so it is printed next to the scenario's "% of ideal". Answers
`GET /health-check` with READY (so bench/run.py can start it like the compared servers) and
`POST /predictions` with a succeeded prediction after sleeping `input.seconds`.

    python3 bench/ceiling_server.py PORT
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time


def respond(conn: socket.socket, body: bytes) -> None:
    conn.sendall(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
    )


def serve(conn: socket.socket) -> None:
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buf) < length:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            body, buf = buf[:length], buf[length:]
            if lines[0].startswith(b"GET /health-check"):
                respond(conn, b'{"status":"READY"}')
                continue
            seconds = float(json.loads(body or b"{}").get("input", {}).get("seconds", 0))
            if seconds > 0:
                time.sleep(seconds)
            respond(conn, b'{"status":"succeeded","output":"ok"}')


def main() -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(128)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
