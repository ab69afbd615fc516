#!/usr/bin/env python3
"""Benchmark cogvisor against a peer server (coglet 0.23.1 by default) on the same model directories.

Each scenario starts both servers on the same model, then runs its measurement several times,
alternating cogvisor and the peer, and reports the median of each and the cogvisor/peer ratio. HTTP
load comes from `wrk` (installed with apt-get when absent); everything else (time to READY, memory,
start delays, recycle time, files left behind) is measured here with the standard library.

    python3 bench/run.py                         # everything (make bench)
    python3 bench/run.py --only trivial_sync_1   # one scenario
    python3 bench/run.py --servers cogvisor --rounds 1 --duration 1 --json out.json

Only loopback addresses are ever contacted. Every server is started in its own session with its own
TMPDIR, stopped with SIGTERM (SIGKILL after 15 s), and any process of its tree still alive after the
stop is counted and killed; files left in its TMPDIR (and, for coglet, under /tmp/coglet, which it uses
whatever TMPDIR says) are counted and then removed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MODELS = BENCH / "models"
WRK_LUA = BENCH / "wrk_report.lua"
DEFAULT_BIN = REPO / "target" / "release" / "cogvisor"
DEFAULT_PEER_VENV = BENCH / ".venv-peer"
COGLET_TMP = Path("/tmp/coglet")
PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


class BenchError(Exception):
    """A benchmark could not be run (a server did not start, a tool is missing, ...)."""


# --------------------------------------------------------------------------------------------------
# Tools


def ensure_wrk() -> str:
    """Path of `wrk`, installing Debian's package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: wrk not found; installing the Debian package", file=sys.stderr)
    apt_env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    for cmd in (sudo + ["apt-get", "update", "-qq"], sudo + ["apt-get", "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(cmd, env=apt_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# Processes and memory, from /proc


def children_of(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    out.extend(int(c) for c in f.read().split())
            except OSError:
                continue
    except OSError:
        pass
    return out


def tree_of(pid: int) -> list[int]:
    """`pid` and all its descendants that are alive now."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(children_of(p))
    return seen


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


class MemorySampler:
    """Samples the RSS of a process tree every `interval` s in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids = tree_of(self.pid)
        last_scan = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_scan > 0.5:
                pids = tree_of(self.pid)
                last_scan = time.monotonic()
            self.peak = max(self.peak, sum(rss_bytes(p) for p in pids))
            self._stop.wait(self.interval)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------------------
# HTTP


def request(
    port: int,
    method: str,
    path: str,
    body: Optional[dict[str, Any]] = None,
    timeout: float = 60,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")
    finally:
        conn.close()


def health(port: int, timeout: float = 10) -> Optional[dict[str, Any]]:
    try:
        status, body = request(port, "GET", "/health-check", timeout=timeout)
    except OSError:
        return None
    return body if status == 200 and isinstance(body, dict) else None


def poll(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------------
# Servers


@dataclass
class Kind:
    """How to start one of the two compared servers."""

    name: str
    argv: Callable[[Path, int], list[str]]
    env: Callable[[Path, int], dict[str, str]]
    # Temp dirs a server writes to whatever TMPDIR says (coglet: /tmp/coglet).
    fixed_tmp: list[Path] = field(default_factory=list)


def cogvisor_kind(binary: Path) -> Kind:
    return Kind(
        name="cogvisor",
        argv=lambda model, port: [str(binary), "serve", str(model), "--host", "127.0.0.1", "--port", str(port)],
        env=lambda model, port: {},
    )


def peer_kind(venv: Path, command: Optional[str]) -> Kind:
    python = venv / "bin" / "python"
    argv = command.split() if command else [str(python), "-m", "cog.server.http", "--host", "127.0.0.1"]
    return Kind(
        name="peer",
        argv=lambda model, port: list(argv),
        env=lambda model, port: {
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
            "PORT": str(port),
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        },
        fixed_tmp=[COGLET_TMP],
    )


def ceiling_kind() -> Kind:
    """bench/ceiling_server.py: the most any server reaches on this machine (see its docstring)."""
    return Kind(
        name="ceiling",
        argv=lambda model, port: [sys.executable, str(BENCH / "ceiling_server.py"), str(port)],
        env=lambda model, port: {},
    )


def snapshot(paths: list[Path]) -> set[str]:
    out: set[str] = set()
    for root in paths:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                out.add(os.path.join(dirpath, name))
    return out


@dataclass
class Leftovers:
    files: int = 0
    processes: int = 0
    stops: int = 0


class Server:
    """One running server: its own session, TMPDIR and log file."""

    def __init__(self, kind: Kind, model: Path, workdir: Path, env: dict[str, str], leftovers: Leftovers) -> None:
        self.kind = kind
        self.model = model
        self.port = free_port()
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{kind.name}-tmp-", dir=workdir))
        self.log_path = workdir / f"{kind.name}-{model.name}-{self.port}.log"
        self.leftovers = leftovers
        self.before_fixed = snapshot(kind.fixed_tmp)
        full_env = dict(os.environ)
        full_env.update({"TMPDIR": str(self.tmpdir), "COG_LOG_LEVEL": "warning"})
        full_env.update(env)
        full_env.update(kind.env(model, self.port))
        self.started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                kind.argv(model, self.port),
                cwd=model,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.ready_after: Optional[float] = None

    def wait_ready(self, timeout: float = 60) -> float:
        """Seconds from spawn to the first /health-check that says READY."""

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.kind.name} on {self.model.name} exited with {self.proc.returncode} before READY; "
                    f"log: {self.log_path}"
                )
            body = health(self.port)
            return bool(body and body.get("status") == "READY")

        poll(ready, timeout, f"{self.kind.name} on {self.model.name} to be READY")
        self.ready_after = time.monotonic() - self.started
        return self.ready_after

    def stop(self) -> None:
        tree = tree_of(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Orphans re-parented away from the server are still ours: count and kill them by pid.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(alive(p) for p in tree[1:]):
            time.sleep(0.02)
        for p in tree[1:]:
            if alive(p):
                self.leftovers.processes += 1
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        left = snapshot([self.tmpdir])
        new_fixed = snapshot(self.kind.fixed_tmp) - self.before_fixed
        self.leftovers.files += len(left) + len(new_fixed)
        self.leftovers.stops += 1
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        for path in sorted(new_fixed, key=len, reverse=True):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------------
# wrk


@dataclass
class Load:
    """What one wrk run counted. `ok` are successes: 2xx (and `succeeded` for predictions)."""

    ok: int
    conflicts: int  # 409
    failed: int  # 2xx whose prediction did not succeed, or other HTTP statuses
    errors: int  # socket errors and timeouts
    seconds: float
    p50_ms: float
    p99_ms: float
    peak_rss: int = 0

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def run_wrk(
    wrk: str,
    server: Server,
    workdir: Path,
    path: str,
    body: Optional[dict[str, Any]],
    clients: int,
    duration: float,
) -> Load:
    env = dict(os.environ)
    env["BENCH_METHOD"] = "POST" if body is not None else "GET"
    env["BENCH_BODY"] = ""
    env["BENCH_EXPECT"] = "prediction" if body is not None else "any"
    if body is not None:
        body_file = workdir / f"body-{os.getpid()}.json"
        body_file.write_text(json.dumps(body))
        env["BENCH_BODY"] = str(body_file)
    argv = [
        wrk,
        "-t1",
        f"-c{clients}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_LUA),
        f"http://127.0.0.1:{server.port}{path}",
    ]
    with MemorySampler(server.proc.pid) as mem:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 120)
    if done.returncode != 0:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no report: {done.stdout[-500:]} {done.stderr[-500:]}")
    r = json.loads(line[len("BENCH_JSON ") :])
    return Load(
        ok=r["ok"],
        conflicts=r["conflicts"],
        failed=r["failed"],
        errors=r["errors"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        peak_rss=mem.peak,
    )


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class Row:
    scenario: str
    metric: str
    unit: str
    values: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""
    # Given the medians (cogvisor, peer) -> met?  None: no target.
    check: Optional[Callable[[Optional[float], Optional[float]], Optional[bool]]] = None
    higher_is_better: bool = True

    def median(self, kind: str) -> Optional[float]:
        vals = self.values.get(kind)
        return statistics.median(vals) if vals else None

    def ratio(self) -> Optional[float]:
        c, p = self.median("cogvisor"), self.median("peer")
        if c is None or p is None or p == 0 or self.unit == "count":
            return None
        return c / p

    def met(self) -> Optional[bool]:
        if self.check is None or self.median("cogvisor") is None:
            return None
        try:
            return self.check(self.median("cogvisor"), self.median("peer"))
        except TypeError:  # a median is missing
            return None

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "values": self.values,
            "median": {k: self.median(k) for k in self.values},
            "ratio": self.ratio(),
            "target": self.target,
            "met": self.met(),
        }


class Results:
    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.notes: list[str] = []  # printed under the table

    def row(self, scenario: str, metric: str, unit: str, **kw: Any) -> Row:
        for r in self.rows:
            if r.scenario == scenario and r.metric == metric:
                return r
        r = Row(scenario, metric, unit, **kw)
        self.rows.append(r)
        return r

    def add(self, scenario: str, metric: str, unit: str, kind: str, value: float, **kw: Any) -> None:
        self.row(scenario, metric, unit, **kw).values.setdefault(kind, []).append(value)


def fmt(v: Optional[float], unit: str = "") -> str:
    if v is None:
        return "—"
    if unit == "count":
        return f"{v:.0f}"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    if abs(v) >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def table(results: Results) -> str:
    lines = [
        "| scenario | metric | cogvisor | peer | ratio c/p | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results.rows:
        ratio = r.ratio()
        met = r.met()
        lines.append(
            f"| {r.scenario} | {r.metric} ({r.unit}) | {fmt(r.median('cogvisor'), r.unit)} | {fmt(r.median('peer'), r.unit)} | "
            f"{'—' if ratio is None else f'{ratio:.2f}×'} | {r.target} | "
            f"{'' if met is None else ('yes' if met else '**NO**')} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Ctx:
    kinds: list[Kind]
    wrk: str
    workdir: Path
    rounds: int
    duration: float
    results: Results
    leftovers: dict[str, Leftovers]
    log: Callable[[str], None]

    def start(self, kind: Kind, model: str, env: Optional[dict[str, str]] = None) -> Server:
        server = Server(kind, MODELS / model, self.workdir, env or {}, self.leftovers[kind.name])
        try:
            server.wait_ready()
        except BaseException:
            server.stop()
            raise
        return server

    def with_servers(self, model: str, env: Optional[dict[str, str]], body: Callable[[dict[str, Server]], None]) -> None:
        servers: dict[str, Server] = {}
        try:
            for kind in self.kinds:
                servers[kind.name] = self.start(kind, model, env)
            body(servers)
        finally:
            for s in servers.values():
                s.stop()

    def alternate(self, servers: dict[str, Server], measure: Callable[[Server], None]) -> None:
        for rnd in range(self.rounds):
            order = list(servers.values())
            if rnd % 2 == 1:
                order.reverse()
            for s in order:
                measure(s)


def prediction_ok(status: int, body: Any) -> bool:
    return status == 200 and isinstance(body, dict) and body.get("status") == "succeeded"


def load_scenario(
    ctx: Ctx,
    name: str,
    model: str,
    path: str,
    body: Optional[dict[str, Any]],
    clients: int,
    env: Optional[dict[str, str]] = None,
    targets: Optional[dict[str, tuple[str, Callable[[Any, Any], Optional[bool]]]]] = None,
    ideal_rps: Optional[float] = None,
    memory: bool = False,
    background: Optional[Callable[[Server], Callable[[], None]]] = None,
) -> None:
    """wrk against both servers, alternating; rows: successful req/s, p50, p99, 409s, errors."""
    targets = targets or {}

    def rowkw(metric: str) -> dict[str, Any]:
        if metric in targets:
            text, check = targets[metric]
            return {"target": text, "check": check}
        return {}

    def run(servers: dict[str, Server]) -> None:
        for s in servers.values():  # warm-up, not recorded
            if body is not None:
                request(s.port, "POST", "/predictions", body)
            else:
                request(s.port, "GET", path)

        def measure(s: Server) -> None:
            finish = background(s) if background else None
            try:
                load = run_wrk(ctx.wrk, s, ctx.workdir, path, body, clients, ctx.duration)
            finally:
                if finish:
                    finish()
            k = s.kind.name
            ctx.results.add(name, "successful req/s", "req/s", k, load.rps, **rowkw("rps"))
            if ideal_rps:
                ctx.results.add(name, f"% of ideal {ideal_rps:.0f} req/s", "%", k, 100 * load.rps / ideal_rps, **rowkw("ideal"))
            ctx.results.add(name, "p50 latency", "ms", k, load.p50_ms, higher_is_better=False, **rowkw("p50"))
            ctx.results.add(name, "p99 latency", "ms", k, load.p99_ms, higher_is_better=False, **rowkw("p99"))
            ctx.results.add(name, "409 responses", "count", k, load.conflicts, higher_is_better=False, **rowkw("409"))
            ctx.results.add(
                name, "failed + errors", "count", k, load.failed + load.errors, higher_is_better=False, **rowkw("errors")
            )
            if memory:
                ctx.results.add(name, "peak RSS (tree)", "MiB", k, load.peak_rss / MIB, higher_is_better=False, **rowkw("mem"))
            ctx.log(
                f"  {name} {k}: {load.rps:.1f} req/s ok={load.ok} 409={load.conflicts} failed={load.failed} "
                f"errors={load.errors} p50={load.p50_ms:.2f}ms p99={load.p99_ms:.2f}ms"
                + (f" peak={load.peak_rss / MIB:.0f}MiB" if memory else "")
            )

        ctx.alternate(servers, measure)

    ctx.with_servers(model, env, run)


def ge_ratio(x: float) -> Callable[[Any, Any], Optional[bool]]:
    return lambda c, p: c / p >= x


def le_ratio(x: float) -> Callable[[Any, Any], Optional[bool]]:
    return lambda c, p: c / p <= x


def long_prediction(seconds: float) -> Callable[[Server], Callable[[], None]]:
    """Starts a sync prediction with a known id in a thread; returns a function that cancels and joins it."""

    def start(s: Server) -> Callable[[], None]:
        pid = f"bench-long-{time.monotonic_ns()}"
        t = threading.Thread(
            target=lambda: request(s.port, "POST", "/predictions", {"id": pid, "input": {"seconds": seconds}}, timeout=seconds + 30),
            daemon=True,
        )
        t.start()

        def busy() -> bool:
            body = health(s.port)
            return bool(body and body.get("status") == "BUSY")

        poll(busy, 10, "the long prediction to make the server BUSY", interval=0.01)

        def finish() -> None:
            request(s.port, "POST", f"/predictions/{pid}/cancel")
            t.join(timeout=seconds + 30)

        return finish

    return start


def scenario_trivial_sync_1(ctx: Ctx) -> None:
    load_scenario(
        ctx, "trivial sync, 1 client", "trivial", "/predictions", {"input": {"text": "x"}}, 1,
        targets={
            "rps": ("≥ 2.0×", ge_ratio(2.0)),
            "409": ("cogvisor 0", lambda c, p: c == 0),
        },
    )


def scenario_trivial_sync_4(ctx: Ctx) -> None:
    load_scenario(ctx, "trivial sync, 4 clients", "trivial", "/predictions", {"input": {"text": "x"}}, 4)


ASYNC_ENV = {"COG_MAX_CONCURRENCY": "8"}


def scenario_async_sleep_8(ctx: Ctx) -> None:
    load_scenario(
        ctx, "async sleep 50 ms, 8 slots, 8 clients", "async_sleep", "/predictions", {"input": {"seconds": 0.05}}, 8,
        env=ASYNC_ENV, ideal_rps=160,
        targets={"ideal": ("cogvisor ≥ 99%", lambda c, p: c >= 99)},
    )
    ceiling(ctx, "async sleep 50 ms, 8 clients", "async_sleep", {"input": {"seconds": 0.05}}, 8, 160)


def ceiling(ctx: Ctx, name: str, model: str, body: dict[str, Any], clients: int, ideal_rps: float) -> None:
    """The same wrk load against bench/ceiling_server.py, noted under the table as the machine's ceiling."""
    server = Server(ceiling_kind(), MODELS / model, ctx.workdir, {}, Leftovers())
    try:
        server.wait_ready()
        values = []
        for _ in range(ctx.rounds):
            load = run_wrk(ctx.wrk, server, ctx.workdir, "/predictions", body, clients, ctx.duration)
            values.append(100 * load.rps / ideal_rps)
            ctx.log(f"  {name} ceiling: {load.rps:.1f} req/s p50={load.p50_ms:.2f}ms")
    finally:
        server.stop()
    ctx.results.notes.append(
        f"{name}: the machine's ceiling, a bare threaded HTTP server that only sleeps "
        f"(bench/ceiling_server.py), reaches {statistics.median(values):.1f}% of ideal under the same load "
        f"(median of {len(values)})."
    )


def scenario_async_sleep_16(ctx: Ctx) -> None:
    load_scenario(
        ctx, "async sleep 50 ms, 8 slots, 16 clients", "async_sleep", "/predictions", {"input": {"seconds": 0.05}}, 16,
        env=ASYNC_ENV, ideal_rps=160,
    )


def scenario_trivial_async_8(ctx: Ctx) -> None:
    load_scenario(
        ctx, "trivial async, 8 slots, 8 clients", "async_sleep", "/predictions", {"input": {"seconds": 0}}, 8,
        env=ASYNC_ENV, targets={"rps": ("≥ 1.5×", ge_ratio(1.5))},
    )


HC_TARGETS = {
    "rps": ("≥ 1.0×", ge_ratio(1.0)),
    "p99": ("cogvisor < 0.5 ms", lambda c, p: c < 0.5),
}


def scenario_health_idle(ctx: Ctx) -> None:
    load_scenario(ctx, "/health-check, no user hc, idle", "trivial", "/health-check", None, 1, targets=HC_TARGETS)


def scenario_health_busy(ctx: Ctx) -> None:
    load_scenario(
        ctx, "/health-check, no user hc, long prediction running", "trivial", "/health-check", None, 1,
        background=long_prediction(ctx.duration + 30),
    )


def scenario_health_user_idle(ctx: Ctx) -> None:
    load_scenario(ctx, "/health-check, user hc, idle", "healthcheck", "/health-check", None, 1)


def scenario_health_user_busy(ctx: Ctx) -> None:
    load_scenario(
        ctx, "/health-check, user hc, long prediction running", "healthcheck", "/health-check", None, 1,
        background=long_prediction(ctx.duration + 30),
    )


def size_scenario(ctx: Ctx, label: str, nbytes: int, targets: Optional[dict[str, Any]] = None) -> None:
    load_scenario(
        ctx, f"{label} input + {label} output, 1 client", "sizes", "/predictions", {"input": {"data": "x" * nbytes}}, 1,
        memory=True, targets=targets,
    )


def scenario_size_1k(ctx: Ctx) -> None:
    size_scenario(ctx, "1 KiB", 1024)


def scenario_size_1m(ctx: Ctx) -> None:
    size_scenario(ctx, "1 MiB", MIB)


def scenario_size_8m(ctx: Ctx) -> None:
    size_scenario(ctx, "8 MiB", 8 * MIB, targets={"rps": ("≥ 1.5×", ge_ratio(1.5)), "mem": ("≤ 0.6×", le_ratio(0.6))})


def scenario_generator(ctx: Ctx) -> None:
    load_scenario(ctx, "1000-token generator, 1 client", "generator", "/predictions", {"input": {"n": 1000}}, 1)


def scenario_lifecycle(ctx: Ctx) -> None:
    """Time to READY, idle RSS (whole tree and the top process alone), 20 predictions, stop."""
    name = "start, idle, stop (trivial model)"
    for rnd in range(max(ctx.rounds, 5)):
        kinds = ctx.kinds if rnd % 2 == 0 else list(reversed(ctx.kinds))
        for kind in kinds:
            server = Server(kind, MODELS / "trivial", ctx.workdir, {}, ctx.leftovers[kind.name])
            try:
                ready = server.wait_ready()
                ok, attempts = 0, 0
                while ok < 20 and attempts < 400:  # coglet answers 409 to some back-to-back requests: retry
                    attempts += 1
                    status, body = request(server.port, "POST", "/predictions", {"input": {"text": "x"}})
                    if prediction_ok(status, body):
                        ok += 1
                    elif status != 409:
                        raise BenchError(f"{kind.name}: trivial prediction failed: {status} {body}")
                if ok != 20:
                    raise BenchError(f"{kind.name}: only {ok} of 20 trivial predictions succeeded in {attempts} tries")
                time.sleep(0.5)  # let the last response's buffers go before sampling idle memory
                tree = tree_of(server.proc.pid)
                idle_tree = sum(rss_bytes(p) for p in tree) / MIB
                idle_top = rss_bytes(server.proc.pid) / MIB
            finally:
                server.stop()
            ctx.results.add(name, "time to READY", "s", kind.name, ready, higher_is_better=False,
                            target="≤ 1.0×", check=le_ratio(1.0))
            ctx.results.add(name, "idle RSS, server + worker tree", "MiB", kind.name, idle_tree, higher_is_better=False)
            ctx.results.add(name, "idle RSS, server process alone", "MiB", kind.name, idle_top, higher_is_better=False,
                            target="cogvisor ≤ 15 MiB", check=lambda c, p: c <= 15)
            ctx.log(f"  lifecycle {kind.name}: ready={ready:.3f}s idle tree={idle_tree:.1f}MiB top={idle_top:.1f}MiB")


def scenario_hc_start_delay(ctx: Ctx) -> None:
    """A prediction submitted while a user healthcheck sleeps 3 s: how long until predict() starts."""
    name = "prediction during a 3 s user healthcheck"
    slow = ctx.workdir / "hc-slow"
    marker = ctx.workdir / "hc-marker"
    env = {"BENCH_HC_SLOW": str(slow), "BENCH_HC_MARKER": str(marker)}

    def run(servers: dict[str, Server]) -> None:
        def measure(s: Server) -> None:
            marker.unlink(missing_ok=True)
            slow.write_text("1")
            checker = threading.Thread(target=lambda: health(s.port, timeout=30), daemon=True)
            checker.start()
            try:
                poll(marker.exists, 15, "the slow healthcheck to start", interval=0.002)
                slow.unlink()
                submitted = time.time()
                status, body = request(s.port, "POST", "/predictions", {"input": {}}, timeout=30)
                if not prediction_ok(status, body):
                    raise BenchError(f"{s.kind.name}: prediction during the healthcheck failed: {status} {body}")
                delay_ms = (float(body["output"]) - submitted) * 1000
            finally:
                slow.unlink(missing_ok=True)
                checker.join(timeout=30)
            ctx.results.add(name, "start delay", "ms", s.kind.name, delay_ms, higher_is_better=False,
                            target="cogvisor < 50 ms", check=lambda c, p: c < 50)
            ctx.log(f"  hc start delay {s.kind.name}: {delay_ms:.1f} ms")

        ctx.alternate(servers, measure)

    ctx.with_servers("healthcheck", env, run)


def scenario_recycle(ctx: Ctx) -> None:
    """cogvisor only: from cog.recycle_worker() / SIGKILL of the worker to READY again."""
    kind = next((k for k in ctx.kinds if k.name == "cogvisor"), None)
    if kind is None:
        return
    name = "recycle to READY (cogvisor only)"
    samples = max(ctx.rounds, 5)

    def ready_after(port: int, generation: int) -> Callable[[], bool]:
        def check() -> bool:
            body = health(port)
            return bool(body and body.get("status") == "READY" and body["worker"]["generation"] > generation)

        return check

    server = ctx.start(kind, "recycler")
    try:
        for _ in range(samples):
            generation = health(server.port)["worker"]["generation"]  # type: ignore[index]
            status, body = request(server.port, "POST", "/predictions", {"input": {"mode": "recycle"}})
            if not prediction_ok(status, body):
                raise BenchError(f"recycle prediction failed: {status} {body}")
            poll(ready_after(server.port, generation), 30, "READY after recycle_worker", interval=0.002)
            seconds = time.time() - float(body["output"])
            ctx.results.add(name, "from cog.recycle_worker()", "s", "cogvisor", seconds, higher_is_better=False,
                            target="< 1 s", check=lambda c, p: c < 1)
            ctx.log(f"  recycle_worker → READY: {seconds:.3f}s")
    finally:
        server.stop()
    # A fresh server per SIGKILL: the restart budget's backoff applies to repeated crashes, by design.
    for _ in range(samples):
        server = ctx.start(kind, "recycler")
        try:
            h = health(server.port)
            assert h is not None
            generation, pid = h["worker"]["generation"], h["worker"]["pid"]
            t0 = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            poll(ready_after(server.port, generation), 30, "READY after SIGKILL of the worker", interval=0.002)
            seconds = time.monotonic() - t0
        finally:
            server.stop()
        ctx.results.add(name, "from SIGKILL of the worker", "s", "cogvisor", seconds, higher_is_better=False,
                        target="< 1 s", check=lambda c, p: c < 1)
        ctx.log(f"  SIGKILL → READY: {seconds:.3f}s")


def scenario_print_flood(ctx: Ctx) -> None:
    """One sync prediction that prints 50 MB in 500,000 `print` calls of 100 bytes: request to response."""
    name = "50 MB of print in predict (500,000 lines)"

    def run(servers: dict[str, Server]) -> None:
        def measure(s: Server) -> None:
            t0 = time.monotonic()
            status, body = request(s.port, "POST", "/predictions", {"input": {"megabytes": 50, "line": 100}}, timeout=300)
            seconds = time.monotonic() - t0
            if not prediction_ok(status, body):
                raise BenchError(f"{s.kind.name}: print flood failed: {status} {str(body)[:300]}")
            ctx.results.add(name, "request to response", "s", s.kind.name, seconds, higher_is_better=False,
                            target="≤ 1.0×", check=le_ratio(1.0))
            ctx.log(f"  print flood {s.kind.name}: {seconds:.2f} s")

        ctx.alternate(servers, measure)

    ctx.with_servers("printer", None, run)


def scenario_pool_cpu(ctx: Ctx) -> None:
    """A sync model that spins 50 ms of CPU per prediction, 2 clients; cogvisor with `workers.count: 2`
    (each worker its own process, so each its own core), the peer with its one worker."""
    load_scenario(
        ctx, "CPU-bound sync 50 ms, 2 clients, cogvisor workers.count 2", "burner", "/predictions",
        {"input": {"ms": 50}}, 2, env={"COGVISOR_WORKERS_COUNT": "2"},
        targets={"rps": ("≥ 1.8×", ge_ratio(1.8))},
    )


SCENARIOS: dict[str, Callable[[Ctx], None]] = {
    "trivial_sync_1": scenario_trivial_sync_1,
    "trivial_sync_4": scenario_trivial_sync_4,
    "async_sleep_8": scenario_async_sleep_8,
    "async_sleep_16": scenario_async_sleep_16,
    "trivial_async_8": scenario_trivial_async_8,
    "health_idle": scenario_health_idle,
    "health_busy": scenario_health_busy,
    "health_user_idle": scenario_health_user_idle,
    "health_user_busy": scenario_health_user_busy,
    "hc_start_delay": scenario_hc_start_delay,
    "size_1k": scenario_size_1k,
    "size_1m": scenario_size_1m,
    "size_8m": scenario_size_8m,
    "generator": scenario_generator,
    "print_flood": scenario_print_flood,
    "lifecycle": scenario_lifecycle,
    "recycle": scenario_recycle,
    "pool_cpu": scenario_pool_cpu,
}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cogvisor", type=Path, default=DEFAULT_BIN, help="the cogvisor binary (%(default)s)")
    ap.add_argument("--peer-venv", type=Path, default=DEFAULT_PEER_VENV, help="venv with coglet (%(default)s)")
    ap.add_argument("--peer-cmd", default=None, help="peer launcher (default: VENV/bin/python -m cog.server.http)")
    ap.add_argument("--servers", default="cogvisor,peer", help="which to run: cogvisor, peer or both")
    ap.add_argument("--only", default="", help=f"comma-separated scenarios: {', '.join(SCENARIOS)}")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each scenario per server (%(default)s)")
    ap.add_argument("--duration", type=float, default=5, help="seconds of each load run (%(default)s)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)

    wanted = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    servers = [s for s in args.servers.split(",") if s]
    bad = [s for s in servers if s not in ("cogvisor", "peer")]
    if bad or not servers:
        ap.error(f"--servers must name cogvisor and/or peer, got {args.servers!r}")
    if args.rounds < 1 or args.duration <= 0:
        ap.error("--rounds must be at least 1 and --duration positive")

    kinds: list[Kind] = []
    if "cogvisor" in servers:
        if not args.cogvisor.is_file():
            raise BenchError(f"cogvisor binary {args.cogvisor} not found; run `make build`")
        kinds.append(cogvisor_kind(args.cogvisor.resolve()))
    if "peer" in servers:
        if not args.peer_cmd and not (args.peer_venv / "bin" / "python").exists():
            raise BenchError(f"peer venv {args.peer_venv} not found; run `make bench-peer`")
        kinds.append(peer_kind(args.peer_venv.resolve(), args.peer_cmd))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    wrk = ensure_wrk()
    results = Results()
    leftovers = {k.name: Leftovers() for k in kinds}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cogvisor-bench-") as workdir:
        ctx = Ctx(kinds, wrk, Path(workdir), args.rounds, args.duration, results, leftovers, log)
        for name in wanted:
            log(f"bench: {name}")
            SCENARIOS[name](ctx)
    for k, lo in leftovers.items():
        results.add("after every stop", "files left in temp dirs", "count", k, lo.files, higher_is_better=False,
                    target="cogvisor 0", check=lambda c, p: c == 0)
        results.add("after every stop", "processes left", "count", k, lo.processes, higher_is_better=False)
        results.add("after every stop", "servers stopped", "count", k, lo.stops)
    elapsed = time.monotonic() - started

    print(f"cogvisor vs peer: {args.rounds} rounds × {args.duration:g} s, medians; ran in {elapsed:.0f} s")
    print()
    print(table(results))
    for note in results.notes:
        print()
        print(f"* {note}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "duration": args.duration, "elapsed_s": elapsed,
                                         "rows": [r.as_json() for r in results.rows],
                                         "notes": results.notes}, indent=2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench: error: {e}", file=sys.stderr)
        sys.exit(1)
