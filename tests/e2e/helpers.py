"""Helpers for the black-box end-to-end suite: start the real `cogvisor` binary, talk HTTP to it, and
read the process table from /proc.

Standard library only (pytest is the one test dependency). Nothing here waits with a fixed sleep: every
wait is a poll with a deadline (`wait_for`).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "tests" / "models"
EXAMPLES = REPO / "examples"
BIN = Path(os.environ.get("COGVISOR_BIN", REPO / "target" / "release" / "cogvisor"))

POLL_INTERVAL = 0.05

HEALTH_STATUSES = {
    "STARTING",
    "READY",
    "BUSY",
    "UNHEALTHY",
    "RECYCLING",
    "SETUP_FAILED",
    "DEFUNCT",
}


# --------------------------------------------------------------------------------------------------
# Waiting


class WaitTimeout(AssertionError):
    pass


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30,
    what: str = "condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Polls `predicate` every 50 ms until it returns something truthy, and returns that value.

    Exceptions listed in `ignore` count as "not yet". On timeout raises `WaitTimeout` naming `what` and
    the last value (or exception) seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except ignore as e:  # noqa: PERF203 - polling loop
            last = e
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout} s waiting for {what}; last value: {last!r}")
        time.sleep(POLL_INTERVAL)


# --------------------------------------------------------------------------------------------------
# Processes, from /proc


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str

    @property
    def alive(self) -> bool:
        """A zombie (Z) or dead (X) entry is not a running process: only its exit status is left."""
        return self.state not in ("Z", "X")


# Health statuses no event leaves (docs/health.md).
FINAL_STATUSES = ("SETUP_FAILED", "DEFUNCT")


def read_proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces or parentheses: parse after the last ")".
    rest = stat[stat.rfind(")") + 1 :].split()
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        cmdline = ""
    return Proc(pid=pid, ppid=int(rest[1]), pgid=int(rest[2]), state=rest[0], cmdline=cmdline)


def processes() -> list[Proc]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            p = read_proc(int(entry))
            if p is not None:
                out.append(p)
    return out


def is_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    p = read_proc(pid)
    return p is not None and p.alive


def live_in_group(pgid: int) -> list[Proc]:
    return [p for p in processes() if p.pgid == pgid and p.alive]


def descendants(root: int, procs: list[Proc] | None = None) -> list[Proc]:
    procs = processes() if procs is None else procs
    children: dict[int, list[Proc]] = {}
    for p in procs:
        children.setdefault(p.ppid, []).append(p)
    out: list[Proc] = []
    stack = [root]
    seen = {root}
    while stack:
        for child in children.get(stack.pop(), []):
            if child.pid not in seen:
                seen.add(child.pid)
                out.append(child)
                stack.append(child.pid)
    return out


def live_descendants(root: int) -> list[Proc]:
    return [p for p in descendants(root) if p.alive]


def kill_quietly(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def killpg_quietly(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------------------------------
# Ports and HTTP


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60,
) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# The server under test


@dataclass
class Server:
    """One running `cogvisor serve` process, started in its own session (so its pgid is its pid)."""

    model_dir: Path
    port: int
    proc: subprocess.Popen
    stderr_path: Path
    # Every worker pid seen in /health-check: teardown kills whatever is left of their groups.
    worker_pids: set[int] = field(default_factory=set)
    # Extra pids a test wants killed at teardown if still running, with the cmdline they had.
    tracked: dict[int, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    # ---- HTTP

    def request(self, method: str, path: str, body: bytes | None = None, headers=None, timeout: float = 60) -> Response:
        return http_request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    def get_json(self, path: str, timeout: float = 60) -> tuple[int, Any]:
        r = self.request("GET", path, timeout=timeout)
        return r.status, _json_or_text(r)

    def post_json(self, path: str, body: Any, timeout: float = 60) -> tuple[int, Any]:
        r = self.request(
            "POST",
            path,
            body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
        return r.status, _json_or_text(r)

    def predict(self, input: dict | None = None, timeout: float = 60, **extra) -> tuple[int, Any]:
        body = {"input": input or {}}
        body.update(extra)
        return self.post_json("/predictions", body, timeout=timeout)

    def health(self) -> dict:
        status, body = self.get_json("/health-check", timeout=30)
        assert status == 200, f"/health-check answered {status}: {body!r}\n{self.stderr_tail()}"
        for worker in [body.get("worker") or {}, *(body.get("workers") or [])]:
            pid = worker.get("pid")
            if isinstance(pid, int):
                self.worker_pids.add(pid)
        return body

    def wait_status(self, *statuses: str, timeout: float = 30) -> dict:
        """Polls /health-check until its status is one of `statuses`; returns that body. A final
        status (SETUP_FAILED, DEFUNCT: docs/health.md) that is not one of them fails at once."""

        def check():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {self.proc.returncode} while waiting for {statuses}\n{self.stderr_tail()}"
                )
            h = self.health()
            if h["status"] in statuses:
                return h
            if h["status"] in FINAL_STATUSES:
                raise AssertionError(f"server is {h['status']}, which is final, while waiting for {statuses}: {h}"
                                     f"\n{self.stderr_tail()}")
            return None

        try:
            return wait_for(check, timeout=timeout, what=f"status in {statuses}", ignore=(OSError,))
        except WaitTimeout as e:
            raise WaitTimeout(f"{e}\nlast health: {self._health_or_error()}\n{self.stderr_tail()}") from None

    def _health_or_error(self) -> Any:
        try:
            return self.get_json("/health-check", timeout=5)
        except OSError as e:
            return e

    # ---- process

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = 40) -> str:
        tail = self.stderr_text().splitlines()[-lines:]
        return f"--- cogvisor stderr (last {len(tail)} lines, {self.stderr_path}) ---\n" + "\n".join(tail)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def track(self, pid: int) -> None:
        p = read_proc(pid)
        if p is not None:
            self.tracked[pid] = p.cmdline

    def cleanup(self) -> list[str]:
        """Kills the server and everything it may have left. Returns the processes that were still
        running after the server was gone (and its worker had had a moment to follow it): the binary
        should leave none."""
        procs = processes()
        candidates = {p.pid: p for p in descendants(self.pid, procs) if p.alive}
        for p in procs:
            if p.alive and (p.pgid in self.worker_pids or (p.pgid == self.pid and p.pid != self.pid)):
                candidates[p.pid] = p
        for pid, cmdline in self.tracked.items():
            p = read_proc(pid)
            if p is not None and p.alive and p.cmdline == cmdline:
                candidates[pid] = p
        candidates.pop(self.pid, None)

        if self.proc.poll() is None:
            killpg_quietly(self.pid)
            kill_quietly(self.pid)
        leftovers: list[str] = []
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            leftovers.append(f"server {self.pid} did not die after SIGKILL")

        def still_running() -> list[Proc]:
            out = []
            for p in candidates.values():
                now = read_proc(p.pid)
                if now is not None and now.alive and now.cmdline == p.cmdline:
                    out.append(now)
            return out

        # The worker dies with the server (parent-death signal); give it a moment before judging.
        try:
            wait_for(lambda: not still_running(), timeout=2, what="processes to follow the server")
        except WaitTimeout:
            pass
        for p in still_running():
            leftovers.append(f"{p.pid} (pgid {p.pgid}): {p.cmdline}")
            kill_quietly(p.pid)
        for pgid in self.worker_pids:
            killpg_quietly(pgid)
        return leftovers


def _json_or_text(r: Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return {"__not_json__": r.body.decode(errors="replace"), "__content_type__": r.headers.get("content-type")}


def spawn_server(
    model_dir: Path,
    log_dir: Path,
    env: dict[str, str] | None = None,
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """Starts `cogvisor serve MODEL_DIR` on a free port without waiting for anything.

    The server's TMPDIR (its runtime directory, the worker's temp files) is `log_dir/tmp` unless `env`
    names one, so nothing it or the model writes lands in the system temp dir, even when it is killed.
    """
    if not BIN.exists():
        raise FileNotFoundError(f"cogvisor binary not found at {BIN} (build it or set COGVISOR_BIN)")
    port = port or free_port()
    full_env = dict(os.environ)
    full_env.pop("PORT", None)
    full_env["TMPDIR"] = str(log_dir / "tmp")
    full_env.update(env or {})
    log_dir.mkdir(parents=True, exist_ok=True)
    Path(full_env["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"cogvisor-{model_dir.name}-{port}.stderr"
    with open(stderr_path, "wb") as stderr, open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(
            [str(BIN), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), *extra_args],
            stdin=subprocess.DEVNULL,
            stdout=devnull,
            stderr=stderr,
            env=full_env,
            start_new_session=True,
        )
    return Server(model_dir=model_dir, port=port, proc=proc, stderr_path=stderr_path)


def wait_listening(server: Server, timeout: float = 30) -> None:
    """Waits until the HTTP port answers /health-check (with any status)."""

    def up():
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {server.proc.returncode} before listening\n{server.stderr_tail()}"
            )
        return server.request("GET", "/health-check", timeout=5).status == 200

    wait_for(up, timeout=timeout, what=f"port {server.port} to answer", ignore=(OSError,))


def run_to_exit(args: list[str], env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Runs the binary to completion (a start that must fail) and returns its result."""
    full_env = dict(os.environ)
    full_env.pop("PORT", None)
    full_env.update(env or {})
    return subprocess.run(
        [str(BIN), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=full_env,
        timeout=timeout,
        start_new_session=True,
    )


def last_line(text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------------------------------
# Contract checks


def assert_health_shape(h: dict) -> None:
    """Checks the /health-check body against the documented shape."""
    assert isinstance(h, dict), h
    assert h.get("status") in HEALTH_STATUSES, h

    setup = h["setup"]
    assert isinstance(setup["started_at"], str) and setup["started_at"], h
    assert setup["status"] in ("starting", "succeeded", "failed"), h
    if "completed_at" in setup:
        assert isinstance(setup["completed_at"], str), h
    if "logs" in setup:
        assert isinstance(setup["logs"], str), h

    version = h["version"]
    assert isinstance(version["cogvisor"], str) and version["cogvisor"], h
    for key in ("python_sdk", "python"):
        if key in version:
            assert isinstance(version[key], str), h

    worker = h["worker"]
    assert worker["pid"] is None or isinstance(worker["pid"], int), h
    assert isinstance(worker["generation"], int), h
    assert worker["started_at"] is None or isinstance(worker["started_at"], str), h
    assert isinstance(worker["restarts"], int), h

    slots = h["slots"]
    assert isinstance(slots["total"], int), h
    assert isinstance(slots["busy"], int), h
    assert isinstance(slots["poisoned"], list), h
    for p in slots["poisoned"]:
        assert isinstance(p["slot"], int) and isinstance(p["reason"], str), h


def assert_succeeded(status: int, body: Any) -> None:
    assert status == 200, (status, body)
    assert body.get("status") == "succeeded", body
    assert isinstance(body.get("id"), str) and body["id"], body
    assert isinstance(body.get("logs"), str), body
    assert isinstance(body.get("metrics", {}).get("predict_time"), (int, float)), body
