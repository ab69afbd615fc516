"""The worker runs in its own process group, as a direct child of the supervisor."""

from helpers import read_proc


def test_worker_has_its_own_process_group(serve):
    server = serve("hello")
    worker_pid = server.health()["worker"]["pid"]
    supervisor = read_proc(server.pid)
    worker = read_proc(worker_pid)
    assert supervisor is not None and worker is not None
    assert worker.ppid == server.pid, f"worker {worker} is not a child of the supervisor {supervisor}"
    assert worker.pgid != supervisor.pgid, (worker, supervisor)
    assert worker.pgid == worker.pid, f"the worker should lead its own group: {worker}"
