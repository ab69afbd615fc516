"""Clients that hold the HTTP server without using it, over raw sockets: idle connections past the
connection limit (and past the open-file limit), headers sent a byte at a time (slowloris), a body that
stops arriving, bodies that together pass the body budget. The server closes or refuses them within its
timeouts, its file descriptors and memory stay bounded (read from /proc), `/health-check` stays fast,
and a sync prediction or an SSE stream that runs longer than every timeout is not cut."""

from __future__ import annotations

import json
import os
import resource
import socket
import threading
import time

from faultlib import RssSampler, in_background, rss_kib
from helpers import wait_for


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(port: int, timeout: float = 10) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def health_latency(server) -> float:
    sent = time.monotonic()
    r = server.request("GET", "/health-check", timeout=10)
    assert r.status == 200, r
    return time.monotonic() - sent


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """Reads until the server closes `sock` (or `seconds` pass: then AssertionError); returns how long
    that took and what was read."""
    start = time.monotonic()
    got = b""
    while True:
        left = seconds - (time.monotonic() - start)
        assert left > 0, f"still open after {seconds} s; read {got[:200]!r}"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return time.monotonic() - start, got
        except socket.timeout:
            continue
        if not chunk:
            return time.monotonic() - start, got
        got += chunk


def test_idle_connections_past_the_limit_give_way_and_health_stays_fast(serve):
    server = serve("hello", env={"COGVISOR_HTTP_MAX_CONNECTIONS": "8"})
    base = fd_count(server.pid)
    idle = [connect(server.port) for _ in range(40)]
    try:
        # The server accepts them all (none waits in the backlog) but holds at most 8.
        wait_for(lambda: health_latency(server) < 0.5, timeout=10, what="a fast health check")
        latencies = [health_latency(server) for _ in range(20)]
        assert max(latencies) < 0.5, latencies
        assert fd_count(server.pid) <= base + 8 + 4, (base, fd_count(server.pid))
        status, body = server.predict({"text": "x"})
        assert status == 200 and body["status"] == "succeeded", body
        # The idle ones gave way to the new ones, oldest first: closed, or (when none could give way
        # in time) answered 503 and closed.
        closed = 0
        for s in idle:
            s.settimeout(0.01)
            try:
                got = s.recv(65536)
                closed += got == b"" or got.startswith(b"HTTP/1.1 503")
            except (socket.timeout, BlockingIOError):
                pass
            except ConnectionResetError:
                closed += 1
        assert closed >= 40 - 8, closed
    finally:
        for s in idle:
            s.close()


def test_the_connection_limit_fits_the_open_file_limit(serve):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, hard))
    try:
        server = serve("hello")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    idle = [connect(server.port) for _ in range(120)]
    try:
        latencies = [health_latency(server) for _ in range(20)]
        assert max(latencies) < 0.5, latencies
        assert fd_count(server.pid) < 96
        status, body = server.predict({"text": "x"})
        assert status == 200 and body["status"] == "succeeded", body
    finally:
        for s in idle:
            s.close()
    assert "http.max_connections lowered to fit the open-file limit" in server.stderr_text()


def test_past_the_limit_with_every_connection_busy_the_answer_is_503(serve):
    server = serve("hello", env={"COGVISOR_HTTP_MAX_CONNECTIONS": "2", "COGVISOR_HTTP_BODY_READ_TIMEOUT": "30s"})
    busy = []
    for _ in range(2):  # two requests in flight: their headers are read, their bodies never end
        s = connect(server.port)
        s.sendall(b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        busy.append(s)
    try:
        def refused():
            r = server.request("GET", "/health-check", timeout=5)
            return r if r.status == 503 else None

        r = wait_for(refused, timeout=10, what="a 503 past the connection limit", ignore=(OSError,))
        assert r.headers.get("retry-after") == "1", r.headers
        assert "http.max_connections" in r.json()["error"], r.body
    finally:
        for s in busy:
            s.close()
    # Once they are gone, connections are served again.
    wait_for(lambda: server.request("GET", "/health-check", timeout=5).status == 200, timeout=10,
             what="health served again", ignore=(OSError,))


def test_slowloris_headers_and_idle_connections_are_closed_on_time(serve):
    server = serve("hello", env={"COGVISOR_HTTP_HEADER_READ_TIMEOUT": "2s", "COGVISOR_HTTP_KEEPALIVE_TIMEOUT": "3s"})
    # Headers a few bytes at a time: closed 2 s after connecting, unanswered.
    slow = connect(server.port)
    start = time.monotonic()
    slow.sendall(b"GET /health-check HTTP/1.1\r\n")
    closed_at = None
    for i in range(40):
        try:
            slow.sendall(f"X-Slow-{i}: y\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            closed_at = time.monotonic() - start
            break
        slow.settimeout(0.25)
        try:
            if slow.recv(1) == b"":
                closed_at = time.monotonic() - start
                break
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed_at = time.monotonic() - start
            break
    slow.close()
    assert closed_at is not None and 1.5 <= closed_at < 4, closed_at
    # A connection that sends nothing: closed after the header timeout.
    silent = connect(server.port)
    took, got = closed_within(silent, 6)
    assert got == b"" and 1.5 <= took < 4, (took, got)
    # A kept-alive connection after its response: closed after the keep-alive timeout.
    kept = connect(server.port)
    kept.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    took, got = closed_within(kept, 8)
    assert got.startswith(b"HTTP/1.1 200"), got[:100]
    assert 2.5 <= took < 5, took
    assert health_latency(server) < 0.5


def test_a_body_that_stops_arriving_is_answered_408(serve):
    server = serve("hello", env={"COGVISOR_HTTP_BODY_READ_TIMEOUT": "2s"})
    s = connect(server.port)
    s.sendall(b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"input\":")
    took, got = closed_within(s, 8)
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), got[:200]
    assert 1.5 <= took < 5, took
    assert "http.body_read_timeout" in json.loads(body)["error"], body
    status, out = server.predict({"text": "x"})
    assert status == 200 and out["status"] == "succeeded", out


def _stalled_body(port: int, size: int, sent: int, results: list, index: int) -> None:
    """Declares `size` bytes, sends `sent` of them, then waits for an answer (up to 10 s)."""
    s = connect(port, timeout=30)
    try:
        s.sendall(
            b"POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\n\r\n".encode()
        )
        chunk = b" " * (1 << 20)
        for _ in range(sent >> 20):
            s.sendall(chunk)
        s.settimeout(10)
        try:
            results[index] = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            results[index] = b""
    finally:
        s.close()


def test_bodies_past_the_budget_are_503_and_memory_stays_bounded(serve):
    server = serve("hello", env={"COGVISOR_HTTP_BODY_READ_TIMEOUT": "30s"})
    base = rss_kib(server.pid)
    sampler = RssSampler(server.pid)
    sampler.start()
    results: list = [None] * 8
    threads = [
        threading.Thread(target=_stalled_body, args=(server.port, 40 << 20, 39 << 20, results, i)) for i in range(8)
    ]
    for t in threads:
        t.start()
    try:
        latencies = [health_latency(server) for _ in range(10)]
    finally:
        for t in threads:
            t.join(timeout=60)
    peak = sampler.stop()
    refused = [r for r in results if r and r.startswith(b"HTTP/1.1 503")]
    held = [r for r in results if r == b""]
    assert len(refused) >= 5 and len(held) <= 3, results
    assert all(b"\r\nretry-after: 1\r\n" in r.lower() for r in refused), refused[0][:300]
    assert b"http.body_budget" in refused[0], refused[0][:400]
    print(f"server RSS {base // 1024} MiB before, peak {peak // 1024} MiB; {len(refused)} of 8 refused")
    # 128 MiB of bodies at most, plus the server's own.
    assert peak - base < (128 + 64) * 1024, f"RSS grew by {(peak - base) // 1024} MiB"
    assert max(latencies) < 0.5, latencies


def test_long_predictions_and_streams_outlive_every_timeout(serve):
    timeouts = {
        "COGVISOR_HTTP_HEADER_READ_TIMEOUT": "1s",
        "COGVISOR_HTTP_KEEPALIVE_TIMEOUT": "1s",
        "COGVISOR_HTTP_BODY_READ_TIMEOUT": "1s",
    }
    slow = serve("slow", env=timeouts)
    sent = time.monotonic()
    status, body = slow.predict({"seconds": 4}, timeout=30)
    assert status == 200 and body["status"] == "succeeded" and body["output"] == "done", body
    assert time.monotonic() - sent >= 4

    streaming = serve("streaming", env=timeouts)
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", streaming.port, timeout=30)
    conn.request(
        "POST",
        "/predictions",
        body=json.dumps({"input": {"n": 3, "delay": 2.0}}),
        headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
    )
    r = conn.getresponse()
    assert r.status == 200
    names = [raw.decode().split(":", 1)[1].strip() for raw in r if raw.startswith(b"event:")]
    conn.close()
    assert names.count("output") == 3 and names[-1] == "completed", names


def test_recycle_checks_the_token_before_reading_and_reads_64_kib_at_most(serve):
    server = serve("hello", env={"COGVISOR_ADMIN_TOKEN": "sesame"})
    # Without the token: 403 at once, before any of a declared 100 MiB body is sent.
    s = connect(server.port)
    s.sendall(
        b"POST /recycle HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n"
        + f"Content-Type: application/json\r\nContent-Length: {100 << 20}\r\n\r\n".encode()
    )
    s.settimeout(5)
    got = s.recv(65536)
    s.close()
    assert got.startswith(b"HTTP/1.1 403"), got[:200]
    # With it, a reason body past 64 KiB is refused and nothing is recycled.
    body = json.dumps({"reason": "x" * (1 << 20)}).encode()
    r = server.request(
        "POST", "/recycle", body=body,
        headers={"Authorization": "Bearer sesame", "Content-Type": "application/json"},
    )
    assert r.status == 413 and "64 KiB" in r.json()["error"], (r.status, r.body[:200])
    h = server.health()
    assert h["worker"]["generation"] == 1 and h["status"] == "READY", h
    r = server.request(
        "POST", "/recycle", body=json.dumps({"reason": "ok"}).encode(),
        headers={"Authorization": "Bearer sesame", "Content-Type": "application/json"},
    )
    assert r.status == 202, r.body
