"""What every fault case checks after it broke something: the health transitions it went through, that
no process of the old worker tree remains, and that nothing is left in the server's private TMPDIR.

Standard library only. No fixed sleeps: every wait polls with a deadline (`helpers.wait_for`).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from concurrent.futures import Future
from typing import Any

from helpers import Server, http_request, is_alive, live_descendants, live_in_group, read_proc, wait_for

FAULT_MODELS = Path(__file__).resolve().parent / "models"

# Statuses after which nothing may change.
FINAL = {"SETUP_FAILED", "DEFUNCT"}


# --------------------------------------------------------------------------------------------------
# Health, sampled in the background


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic() when the request was sent
    status: str
    pid: int | None
    generation: int
    restarts: int
    body: dict


class HealthRecorder(threading.Thread):
    """Polls /health-check every 20 ms and keeps every answer, so a test can look at the transitions
    a fault caused (a transient state may fall between two samples; the checks allow for that)."""

    def __init__(self, server: Server) -> None:
        super().__init__(name=f"health-recorder-{server.port}", daemon=True)
        self.server = server
        self.samples: list[Sample] = []
        self._halt = threading.Event()

    def sample(self) -> None:
        """Asks once and records the answer (an unanswered request records nothing)."""
        at = time.monotonic()
        try:
            r = http_request(self.server.port, "GET", "/health-check", timeout=10)
            body = r.json()
        except (OSError, ValueError):
            return
        if not isinstance(body, dict):
            return
        worker = body.get("worker") or {}
        pid = worker.get("pid")
        if isinstance(pid, int):
            self.server.worker_pids.add(pid)
        self.samples.append(
            Sample(
                at=at,
                status=body.get("status", "?"),
                pid=pid,
                generation=worker.get("generation", 0),
                restarts=worker.get("restarts", 0),
                body=body,
            )
        )

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(0.02)

    def stop(self) -> list[Sample]:
        """Stops polling and takes one last sample, so the history ends with the current state."""
        self._halt.set()
        self.join(timeout=15)
        if self.server.proc.poll() is None:
            self.sample()
        return list(self.samples)

    def wait_seen(self, status: str, timeout: float = 30) -> Sample:
        """Waits until a sample with `status` has been recorded."""
        return wait_for(
            lambda: next((s for s in list(self.samples) if s.status == status), None),
            timeout=timeout,
            what=f"the recorder to see {status}",
        )

    def statuses(self) -> list[str]:
        """The statuses seen, consecutive repeats collapsed."""
        out: list[str] = []
        for s in self.samples:
            if not out or out[-1] != s.status:
                out.append(s.status)
        return out


def assert_valid_transitions(samples: list[Sample]) -> None:
    """What any sampled history must satisfy: STARTING only before anything else, nothing after a final
    state, generations and restarts never go down."""
    assert samples, "no /health-check answer was recorded"
    left_starting = False
    for prev, cur in zip(samples, samples[1:]):
        if prev.status != "STARTING":
            left_starting = True
        assert not (left_starting and cur.status == "STARTING"), f"STARTING again after {prev.status}: {cur.body}"
        assert not (prev.status in FINAL and cur.status != prev.status), (
            f"left the final state {prev.status} for {cur.status}: {cur.body}"
        )
        assert cur.generation >= prev.generation, f"generation went down: {prev.body} then {cur.body}"
        assert cur.restarts >= prev.restarts, f"restarts went down: {prev.body} then {cur.body}"


def assert_never_ready_with(samples: list[Sample], dead_pid: int, dead_since: float, slack: float = 1.0) -> None:
    """No answer sent more than `slack` seconds after `dead_pid` was seen dead may call it READY/BUSY:
    health never shows a serving worker that is gone (the slack covers the exit being reaped)."""
    for s in samples:
        if s.at > dead_since + slack and s.status in ("READY", "BUSY"):
            assert s.pid != dead_pid, f"{s.status} with the dead worker {dead_pid} {s.at - dead_since:.2f} s after it died: {s.body}"


# --------------------------------------------------------------------------------------------------
# Processes


def read_pids(pid_dir: Path, *names: str, timeout: float = 10) -> dict[str, int]:
    """The pids the model wrote to `pid_dir/<name>` (a forked daemon writes its own a moment later)."""

    def all_there() -> dict[str, int] | None:
        out = {}
        for name in names:
            path = pid_dir / name
            text = path.read_text().strip() if path.exists() else ""
            if not text:
                return None
            out[name] = int(text)
        return out

    return wait_for(all_there, timeout=timeout, what=f"pid files {names} in {pid_dir}")


def wait_tree_gone(server: Server, worker_pid: int, others: dict[str, int] | None = None, timeout: float = 30) -> None:
    """Waits until the old worker, everything in its process group, everything below it and every pid
    in `others` (children the model started, daemons that called setsid) are gone. Zombies count as
    gone only if the supervisor is not their parent (it must reap its own)."""
    others = dict(others or {})
    for pid in others.values():
        server.track(pid)

    def leftovers() -> list[str]:
        out = []
        if is_alive(worker_pid):
            out.append(f"worker {worker_pid}")
        out += [f"{p.pid} (group {p.pgid}) {p.cmdline}" for p in live_in_group(worker_pid)]
        out += [f"{p.pid} below the worker: {p.cmdline}" for p in live_descendants(worker_pid)]
        out += [f"{name} {pid}" for name, pid in others.items() if is_alive(pid)]
        for pid in [worker_pid, *others.values()]:
            p = read_proc(pid)
            if p is not None and p.state == "Z" and p.ppid == server.pid:
                out.append(f"zombie {pid} not reaped by the supervisor")
        return sorted(set(out))

    try:
        wait_for(lambda: not leftovers(), timeout=timeout, what="the old worker tree to be gone")
    except AssertionError as e:
        raise AssertionError(f"{e}\nstill there: {leftovers()}\n{server.stderr_tail()}") from None


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples the RSS of one process every 20 ms and keeps the peak, overall and per `phase` (a
    label the test sets as it goes)."""

    def __init__(self, pid: int) -> None:
        super().__init__(name=f"rss-{pid}", daemon=True)
        self.pid = pid
        self.peak = rss_kib(pid)
        self.phase = "start"
        self.by_phase: dict[str, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            now = rss_kib(self.pid)
            self.peak = max(self.peak, now)
            self.by_phase[self.phase] = max(self.by_phase.get(self.phase, 0), now)
            self._halt.wait(0.02)

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=5)
        return self.peak


# --------------------------------------------------------------------------------------------------
# Temporary files


def temp_leftovers(tmpdir: Path) -> list[str]:
    """Everything in the server's TMPDIR that should not be there while it runs: anything but one
    runtime directory holding the embedded Python tree, its `owner` file and the empty `spill/`,
    `outputs/` and `inputs/` (the worker's URL downloads, made at the first one)."""
    out = []
    runtimes = [p for p in tmpdir.iterdir() if p.name.startswith("cogvisor-") and p.is_dir()]
    for entry in tmpdir.iterdir():
        if entry not in runtimes[:1]:
            out.append(str(entry))
    for runtime in runtimes[:1]:
        for entry in runtime.rglob("*"):
            rel = entry.relative_to(runtime)
            if rel.parts[0] == "python" or str(rel) in ("spill", "outputs", "inputs", "owner"):
                continue
            out.append(str(entry))
    return sorted(out)


def wait_no_temp_leftovers(tmpdir: Path, timeout: float = 15) -> None:
    try:
        wait_for(lambda: not temp_leftovers(tmpdir), timeout=timeout, what=f"{tmpdir} to hold only the runtime dir")
    except AssertionError as e:
        raise AssertionError(f"{e}\nleft: {temp_leftovers(tmpdir)}") from None


# --------------------------------------------------------------------------------------------------
# One server under a fault


@dataclass
class Fault:
    server: Server
    tmpdir: Path
    pid_dir: Path
    recorder: HealthRecorder | None = field(default=None)

    def record(self) -> HealthRecorder:
        self.recorder = HealthRecorder(self.server)
        self.recorder.start()
        return self.recorder

    def worker_pid(self) -> int:
        pid = self.server.health()["worker"]["pid"]
        assert isinstance(pid, int), self.server.health()
        return pid

    def wait_ready_generation(self, generation: int, timeout: float = 60) -> dict:
        """Waits for READY served by worker generation `generation` (or later) and returns the health."""

        def ready():
            h = self.server.health()
            return h if h["status"] == "READY" and h["worker"]["generation"] >= generation else None

        try:
            return wait_for(ready, timeout=timeout, what=f"READY with generation {generation}", ignore=(OSError,))
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.server.stderr_tail()}") from None

    def predict(self, timeout: float = 120, **input: Any) -> tuple[int, Any]:
        return self.server.predict(input, timeout=timeout)

    def assert_serves(self) -> dict:
        status, body = self.predict(mode="ok")
        assert status == 200 and body["status"] == "succeeded", body
        return body["output"]

    def assert_replaced_cleanly(self, old: int, dead_at: float) -> None:
        """After worker `old` died at `dead_at`: its tree is gone, generation 2 serves, the recorded
        health never broke the rules nor said READY for the dead worker, no temp file is left, and the
        server stops cleanly."""
        assert self.recorder is not None, "call record() before the fault"
        wait_tree_gone(self.server, old)
        assert self.assert_serves()["generation"] == 2
        samples = self.recorder.stop()
        assert_valid_transitions(samples)
        assert_never_ready_with(samples, old, dead_at)
        wait_no_temp_leftovers(self.tmpdir)
        self.stop_cleanly()

    def stop_cleanly(self, timeout: float = 30) -> None:
        """SIGTERM; the server exits 0, its TMPDIR is empty, and no process it started remains."""
        pids = set(self.server.worker_pids)
        self.server.signal(signal.SIGTERM)
        rc = self.server.wait_exit(timeout=timeout)
        assert rc == 0, f"exit status {rc} after SIGTERM\n{self.server.stderr_tail()}"
        wait_for(
            lambda: not any(is_alive(p) or live_in_group(p) for p in pids),
            timeout=10,
            what=f"the workers {sorted(pids)} and their groups to be gone",
        )
        left = sorted(str(p) for p in self.tmpdir.iterdir())
        assert left == [], f"left in TMPDIR after a clean stop: {left}"


def in_background(fn, *args, **kwargs) -> "Future[Any]":
    """Runs `fn` on a thread (a request that blocks until its prediction ends); `.result(timeout)`."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future


def wait_dead(pid: int, timeout: float = 30) -> float:
    """Waits until `pid` is no longer running; returns when that was seen (time.monotonic())."""
    return wait_for(lambda: (not is_alive(pid)) and time.monotonic(), timeout=timeout, what=f"process {pid} to die")


def wait_busy(server: Server, slots: int = 1, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (lambda h: h if h["slots"]["busy"] >= slots else None)(server.health()),
        timeout=timeout,
        what=f"{slots} busy slot(s)",
    )
