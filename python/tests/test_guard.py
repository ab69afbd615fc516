"""The group guard kills the worker's process group when the control pipe's write end goes away (the
supervisor died), and stays out of the way otherwise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import subprocess, sys, time
sys.path.insert(0, {path!r})
from cogvisor_worker.guard import start_group_guard
guard = start_group_guard(0)
child = subprocess.Popen(["sleep", "100"])
print(guard, child.pid, flush=True)
time.sleep(100)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.02)
    return [p for p in pids if alive(p)]


def run(new_session: bool, stdin: int = subprocess.PIPE) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT.format(path=PYTHON_DIR)],
        stdin=stdin,
        stdout=subprocess.PIPE,
        start_new_session=new_session,
        text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_the_group_dies_when_the_control_pipe_hangs_up():
    proc, line = run(new_session=True)
    try:
        guard, child = (int(x) for x in line.split())
        assert alive(guard) and alive(child) and alive(proc.pid)
        # Data on the pipe is not a hang-up: the guard neither reads it nor reacts.
        assert proc.stdin is not None
        proc.stdin.write("not for the guard\n")
        proc.stdin.flush()
        time.sleep(0.2)  # a negative check: nothing may happen in this window
        assert alive(guard) and alive(child) and alive(proc.pid)

        proc.stdin.close()  # the supervisor's end goes away
        assert wait_gone([proc.pid, child, guard]) == []
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_no_guard_when_the_worker_does_not_lead_its_group():
    proc, line = run(new_session=False)
    try:
        assert line.split()[0] == "None", line
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_no_guard_when_the_control_input_is_not_a_pipe():
    proc, line = run(new_session=True, stdin=subprocess.DEVNULL)
    try:
        assert line.split()[0] == "None", line
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_kill_marked_kills_exactly_the_processes_carrying_the_tree_id():
    from cogvisor_worker.guard import kill_marked, marked_pids

    tree_id = f"/tmp/cogvisor-test-{os.getpid()}#{time.monotonic_ns()}"
    marked = subprocess.Popen(["sleep", "100"], env={**os.environ, "COGVISOR_TREE_ID": tree_id}, start_new_session=True)
    # A prefix of the id is another tree: it must not match.
    other = subprocess.Popen(["sleep", "100"], env={**os.environ, "COGVISOR_TREE_ID": tree_id + "0"}, start_new_session=True)
    try:
        assert marked_pids(tree_id) == [marked.pid]
        assert kill_marked(tree_id) >= 1
        assert marked.wait(timeout=10) == -signal.SIGKILL
        assert other.poll() is None
        assert marked_pids(tree_id) == []
    finally:
        for p in (marked, other):
            p.kill()
            p.wait(timeout=10)


DAEMON_SCRIPT = """
import os, sys, time
sys.path.insert(0, {path!r})
from cogvisor_worker.guard import start_group_guard
guard = start_group_guard(0)
r, w = os.pipe()
if os.fork() == 0:  # double fork + setsid: a daemon out of the worker's group and session
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode() + b"\\n")
        time.sleep(100)
    os._exit(0)
daemon = int(os.read(r, 64))
print(guard, daemon, flush=True)
time.sleep(100)
"""


def test_a_setsid_daemon_with_the_tree_id_dies_when_the_control_pipe_hangs_up():
    tree_id = f"/tmp/cogvisor-test-{os.getpid()}#{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [sys.executable, "-c", DAEMON_SCRIPT.format(path=PYTHON_DIR)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
        text=True,
        env={**os.environ, "COGVISOR_TREE_ID": tree_id},
    )
    assert proc.stdout is not None and proc.stdin is not None
    guard, daemon = (int(x) for x in proc.stdout.readline().split())
    try:
        assert os.getpgid(daemon) != proc.pid  # really out of the group
        proc.stdin.close()
        assert wait_gone([proc.pid, guard, daemon]) == []
    finally:
        for pid in (daemon, proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=10)


def _runtime_dir(tmp_path, owner: str | None):
    d = tmp_path / "cogvisor-abc123"
    (d / "spill").mkdir(parents=True)
    if owner is not None:
        (d / "owner").write_text(owner)
    return d


def _identity_of(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f"{pid} {f.read().rsplit(')', 1)[1].split()[19]}"


def test_the_runtime_dir_of_a_gone_owner_is_removed_and_a_live_owners_kept(tmp_path):
    from cogvisor_worker.guard import remove_orphaned_runtime_dir

    child = subprocess.Popen(["sleep", "100"])
    owner = _identity_of(child.pid)
    d = _runtime_dir(tmp_path, owner)
    assert remove_orphaned_runtime_dir(str(d), wait=0.1) is False  # alive: kept
    assert d.exists()
    child.kill()  # a zombie until reaped: gone already
    deadline = time.monotonic() + 10
    while alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert remove_orphaned_runtime_dir(str(d), wait=5) is True
    assert not d.exists()
    child.wait(timeout=10)


def test_a_runtime_dir_without_owner_or_with_a_foreign_name_is_left_alone(tmp_path):
    from cogvisor_worker.guard import remove_orphaned_runtime_dir

    d = _runtime_dir(tmp_path, None)
    assert remove_orphaned_runtime_dir(str(d), wait=0) is False and d.exists()
    other = tmp_path / "not-ours"
    other.mkdir()
    (other / "owner").write_text("999999999 1")
    assert remove_orphaned_runtime_dir(str(other), wait=0) is False and other.exists()
    # A reused pid (same pid, another start time) is a gone owner.
    reused = _runtime_dir(tmp_path / "x", f"{os.getpid()} 1")
    assert remove_orphaned_runtime_dir(str(reused), wait=0) is True
