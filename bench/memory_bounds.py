#!/usr/bin/env python3
"""The server's peak RSS through issue 15's memory attacks (items 1 and 2), one scenario at a time:

* `history`: one async prediction of a streaming model that prints its 1 MiB input 300 times;
* `live`: the same with 20 `Accept: text/event-stream` subscribers attached before the prints, that
  never read;
* `late`: 20 such subscribers attaching after it ended (each gets the replay);
* `webhooks`: 150 predictions with a 1 MiB input whose webhook receiver accepts and never answers.

    python3 bench/memory_bounds.py --bin target/debug/cogvisor [--scenario live] [--mib 1]

Prints one line per scenario: idle RSS, peak RSS (sampled every 20 ms from /proc/<pid>/status) and the
RSS at the end. Standard library only; the server gets a private TMPDIR that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "faults" / "models" / "stream_printer"
MiB = 1024 * 1024


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, rss_kib(pid), threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self.halt.wait(0.02)

    def stop(self) -> int:
        self.halt.set()
        self.join()
        return max(self.peak, rss_kib(self.pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port: int, method: str, path: str, body: object = None, headers: dict | None = None, timeout: float = 120):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if request(port, "GET", "/health-check", timeout=5)[1].get("status") == "READY":
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("server not READY")


def wait_status(port: int, pid: str, done: tuple[str, ...] = ("succeeded", "failed", "canceled"), timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = request(port, "GET", f"/predictions/{pid}")
        if status == 200 and body.get("status") in done:
            return body
        time.sleep(0.2)
    raise SystemExit(f"prediction {pid} did not end")


def stuck_subscriber(port: int, pid: str) -> socket.socket:
    """Attaches an SSE stream to `pid` with a PUT and never reads from it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({"id": pid, "input": {}}).encode()
    s.sendall(
        f"PUT /predictions/{pid} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return s


class SilentReceiver(threading.Thread):
    """Accepts webhook connections and never answers."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.held:
            c.close()


def scenario(name: str, port: int, server_pid: int, mib: int) -> tuple[int, int]:
    text = "x" * (mib * MiB)
    sampler = Peak(server_pid)
    sampler.start()
    held: list[socket.socket] = []
    receiver = None
    try:
        if name == "history":
            request(port, "PUT", "/predictions/h1", {"input": {"text": text, "prints": 300}}, {"Prefer": "respond-async"})
            wait_status(port, "h1")
        elif name == "live":
            request(port, "PUT", "/predictions/l1", {"input": {"text": text, "prints": 300, "wait": 3}}, {"Prefer": "respond-async"})
            held = [stuck_subscriber(port, "l1") for _ in range(20)]
            wait_status(port, "l1")
            time.sleep(2)
        elif name == "late":
            request(port, "PUT", "/predictions/t1", {"input": {"text": text, "prints": 300}}, {"Prefer": "respond-async"})
            wait_status(port, "t1")
            held = [stuck_subscriber(port, "t1") for _ in range(20)]
            time.sleep(5)
        elif name == "webhooks":
            receiver = SilentReceiver()
            receiver.start()
            hook = f"http://127.0.0.1:{receiver.port}/hook"
            for i in range(150):
                status, body = request(port, "PUT", f"/predictions/w{i}", {"input": {"text": text, "prints": 0}, "webhook": hook})
                assert status == 200, (status, body)
            time.sleep(10)
        else:
            raise SystemExit(f"unknown scenario {name}")
        end = rss_kib(server_pid)
        return sampler.stop(), end
    finally:
        sampler.stop()
        for s in held:
            s.close()
        if receiver is not None:
            receiver.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(ROOT / "target" / "debug" / "cogvisor"))
    ap.add_argument("--scenario", action="append", choices=["history", "live", "late", "webhooks"])
    ap.add_argument("--mib", type=int, default=1)
    args = ap.parse_args()
    for name in args.scenario or ["history", "live", "late", "webhooks"]:
        tmp = Path(tempfile.mkdtemp(prefix="cogvisor-bench-", dir=ROOT / "target"))
        port = free_port()
        env = {**os.environ, "TMPDIR": str(tmp)}
        env.pop("PORT", None)
        proc = subprocess.Popen(
            [args.bin, "serve", str(MODEL), "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(tmp / "stderr", "wb"), env=env,
        )
        try:
            wait_ready(port, proc)
            idle = rss_kib(proc.pid)
            peak, end = scenario(name, port, proc.pid, args.mib)
            print(f"{name:9} idle {idle / 1024:7.1f} MiB  peak {peak / 1024:7.1f} MiB  end {end / 1024:7.1f} MiB", flush=True)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
