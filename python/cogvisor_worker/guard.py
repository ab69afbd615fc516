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

It only starts when the worker leads its own process group and its control input is a pipe (as the
supervisor spawns it), so a worker started by hand or by a test harness never kills a group it does not
own, and never leaves a guard waiting on something that cannot hang up.
"""

from __future__ import annotations

import os
import select
import signal
import stat


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
        os.killpg(pgid, signal.SIGKILL)
    finally:
        os._exit(0)


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
