"""The group guard: kills the worker's process group when the supervisor disappears.

The worker dies with the supervisor on its own (the supervisor sets a parent-death signal), but a
parent-death signal reaches only the direct child: processes the model started stay behind, reparented
to init, when the supervisor is killed with SIGKILL and can run nothing. The guard covers the ones in
the worker's process group.

It is a small process forked by the worker before anything else runs (no threads yet). It keeps one
file descriptor, a duplicate of the control pipe's read end, and waits for that pipe to hang up, which
happens when the last write end closes: the supervisor's, when it exits or is killed. Then it sends
SIGKILL to the worker's whole process group, itself included. It reads nothing, so the worker's
control messages are untouched. In every orderly stop the supervisor kills the group itself, the guard
with it.

Processes that left the group — a daemon that called ``setsid()`` — are found by the worker tree's
mark: the supervisor gives every worker a ``COGVISOR_TREE_ID`` unique to that worker, which every
process the model starts inherits with its environment. After the group, the guard kills every process
of this user whose ``/proc/<pid>/environ`` carries that exact ``COGVISOR_TREE_ID=...`` entry, sweeping
until a pass finds none (a daemon may fork while it is being killed). A process that cleared its
environment (``env -i``) is out of its reach.

Last, the runtime directory (the part of ``COGVISOR_TREE_ID`` before ``#``): its ``owner`` file names the
supervisor (``<pid> <start time>``). When that process is gone — exited, a zombie, or its pid reused —
within a few seconds, nothing else will remove the directory, so the guard does. A supervisor that is
still alive (it closed the pipe itself, in an orderly stop) keeps its directory.

It only starts when the worker leads its own process group and its control input is a pipe (as the
supervisor spawns it), so a worker started by hand or by a test harness never kills a group it does not
own, and never leaves a guard waiting on something that cannot hang up.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import stat
import time

TREE_ID_VAR = "COGVISOR_TREE_ID"
# Sweeps of /proc after the group is killed; each kills what it finds, until one finds nothing.
MAX_SWEEPS = 20
# How long the guard waits for the runtime directory's owner to be gone before it leaves the directory be.
OWNER_GONE_WAIT = 3.0


def start_group_guard(control_in: int = 0) -> int | None:
    """Forks the guard watching `control_in`; returns its pid, or None when it does not apply."""
    pgid = os.getpgid(0)
    if pgid != os.getpid():
        return None
    try:
        if not stat.S_ISFIFO(os.fstat(control_in).st_mode):
            return None
    except OSError:
        return None
    tree_id = os.environ.get(TREE_ID_VAR, "")
    watched = os.dup(control_in)  # non-inheritable, but fork keeps it
    pid = os.fork()
    if pid != 0:
        os.close(watched)
        return pid
    # The guard: nothing from the worker may run here, and any failure just ends it.
    try:
        _close_all_but(watched)
        poller = select.poll()
        poller.register(watched, 0)  # POLLHUP and POLLERR are always reported; never POLLIN
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            if any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, mask in events):
                break
        if tree_id:
            # Out of the group first, so the group's SIGKILL below cannot end the sweep early.
            os.setpgid(0, 0)
        os.killpg(pgid, signal.SIGKILL)
        if tree_id:
            kill_marked(tree_id)
            remove_orphaned_runtime_dir(tree_id.rpartition("#")[0])
    finally:
        os._exit(0)


def _identity(pid: int) -> tuple[str, str] | None:
    """(state, start time) of ``pid`` from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command: field 3 is the state, field 22 the start time.
    return fields[0], fields[19]


def owner_gone(runtime_dir: str) -> bool | None:
    """Whether the process named by ``runtime_dir/owner`` no longer runs; None without a readable owner."""
    try:
        with open(os.path.join(runtime_dir, "owner")) as f:
            pid_text, start = f.read().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    now = _identity(pid)
    return now is None or now[0] in ("Z", "X") or now[1] != start


def remove_orphaned_runtime_dir(runtime_dir: str, wait: float = OWNER_GONE_WAIT) -> bool:
    """Remove ``runtime_dir`` once its owner is gone (waiting up to ``wait`` s); True if removed."""
    if not os.path.basename(runtime_dir).startswith("cogvisor-"):
        return False
    deadline = time.monotonic() + wait
    while True:
        gone = owner_gone(runtime_dir)
        if gone is None:
            return False
        if gone:
            shutil.rmtree(runtime_dir, ignore_errors=True)
            return not os.path.exists(runtime_dir)
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def marked_pids(tree_id: str, proc: str = "/proc") -> list[int]:
    """Pids of this user's processes (but this one) whose environment holds ``COGVISOR_TREE_ID=tree_id``."""
    entry = f"{TREE_ID_VAR}={tree_id}".encode()
    me, uid = os.getpid(), os.getuid()
    found = []
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        path = os.path.join(proc, name)
        try:
            if os.stat(path).st_uid != uid:
                continue
            with open(os.path.join(path, "environ"), "rb") as f:
                environ = f.read()
        except OSError:
            continue  # gone, or not ours to read
        if entry in environ.split(b"\0"):
            found.append(int(name))
    return found


def kill_marked(tree_id: str, proc: str = "/proc") -> int:
    """SIGKILL every process marked with ``tree_id``, sweeping until none is left; returns how many."""
    killed = 0
    for _ in range(MAX_SWEEPS):
        pids = marked_pids(tree_id, proc)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
    return killed


def _close_all_but(keep: int) -> None:
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(0, keep)
        os.closerange(keep + 1, 65536)
        return
    for fd in fds:
        if fd != keep:
            try:
                os.close(fd)
            except OSError:
                pass  # the descriptor listdir used, already closed
