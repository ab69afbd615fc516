"""Memory bounds: `recycle.max_rss` recycles a worker whose process tree grew past it, once its predictions
finish, with no prediction lost; `recycle.max_gpu_memory` does the same from nvidia-smi's numbers, and is
refused at start when no GPU is visible (there is none here: a stand-in nvidia-smi plays one)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from helpers import MODELS, descendants, free_port, is_alive, last_line, processes, run_to_exit, wait_for

MB = 1_000_000


def _vm_rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss(root: int) -> int:
    """The summed VmRSS of every live process below `root` (the supervisor): its workers and what they
    started. Pages shared between processes count once per process, as cogvisor counts them."""
    return sum(_vm_rss(p.pid) for p in descendants(root, processes()))


class RssSampler:
    """Samples `tree_rss(root)` every 10 ms in a thread, keeping the peak."""

    def __init__(self, root: int):
        self.root = root
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, tree_rss(self.root))
            self.samples += 1

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class WorkerRssSampler(RssSampler):
    """Also keeps each worker's peak: the tree below each direct child of `root` (a worker of a pool)."""

    def __init__(self, root: int):
        super().__init__(root)
        self.worker_peaks: dict[int, int] = {}

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            procs = processes()
            total = 0
            for worker in (p for p in procs if p.ppid == self.root):
                rss = sum(_vm_rss(q.pid) for q in [worker, *descendants(worker.pid, procs)])
                self.worker_peaks[worker.pid] = max(self.worker_peaks.get(worker.pid, 0), rss)
                total += rss
            self.peak = max(self.peak, total)
            self.samples += 1


def predict_until_admitted(server, input, timeout=60):
    """Submits a prediction, retrying on 503 while the worker is being replaced."""

    def attempt():
        status, body = server.predict(input)
        return None if status == 503 else (status, body)

    return wait_for(attempt, timeout=timeout, what="a prediction to be admitted")


def metric_samples(server) -> dict[tuple[str, tuple], float]:
    r = server.request("GET", "/metrics")
    assert r.status == 200, r.body
    out = {}
    for family in text_string_to_metric_families(r.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def recycles(samples, trigger: str) -> float:
    return samples[("cogvisor_worker_recycles_total", (("outcome", "succeeded"), ("trigger", trigger)))]


def test_a_model_leaking_40_mb_per_call_serves_100_calls_and_stays_under_500_mb(serve):
    server = serve("leaker", env={"COGVISOR_RECYCLE_MAX_RSS": "400MB"})
    generations = []
    with RssSampler(server.pid) as sampler:
        for i in range(100):
            status, body = predict_until_admitted(server, {"megabytes": 40})
            assert status == 200 and body["status"] == "succeeded", (i, body)
            generations.append(body["output"]["generation"])
    assert sampler.samples > 50, sampler.samples
    assert sampler.peak <= 500 * MB, f"the workers' RSS peaked at {sampler.peak / MB:.0f} MB"
    # About 400 MB / 40 MB per call: a new worker every ten calls or so, never one that held much more.
    assert generations == sorted(generations), generations
    assert generations[-1] >= 9, generations
    assert max(generations.count(g) for g in set(generations)) <= 10, generations
    h = server.wait_status("READY")
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "max_rss" and last["succeeded"] is True, last
    assert "past recycle.max_rss 381.5 MiB (400000000 bytes)" in last["reason"], last
    s = metric_samples(server)
    assert recycles(s, "max_rss") == generations[-1] - 1, s
    assert s[("cogvisor_predictions_total", (("kind", "prediction"), ("outcome", "failed")))] == 0
    assert s[("cogvisor_predictions_total", (("kind", "prediction"), ("outcome", "succeeded")))] == 100
    assert 10 * MB < s[("cogvisor_worker_rss_bytes", ())] < 500 * MB, s


def test_a_pool_of_two_leaking_workers_serves_100_calls_each_worker_under_500_mb(serve):
    # A pool's max_rss recycles roll: the other worker serves while one sets up again. Here the
    # leak outruns a setup (ten calls fill a worker faster than the other is back), so a worker
    # waiting its turn goes on serving until it is an eighth past the bound (450 MB), then is
    # recycled at once; while both set up, a prediction waits for one (recycle.admission_wait)
    # instead of a 503: no worker past 500 MB, nothing failed, nothing refused.
    server = serve("leaker", env={"COGVISOR_RECYCLE_MAX_RSS": "400MB", "COGVISOR_WORKERS_COUNT": "2"})
    wait_for(lambda: server.health()["pool"]["ready"] == 2, timeout=60, what="both workers READY")
    refused = 0
    with WorkerRssSampler(server.pid) as sampler:
        for i in range(100):

            def attempt():
                nonlocal refused
                status, body = server.predict({"megabytes": 40})
                refused += status == 503
                return None if status == 503 else (status, body)

            status, body = wait_for(attempt, timeout=60, what="a prediction to be admitted")
            assert status == 200 and body["status"] == "succeeded", (i, body)
    assert sampler.samples > 50, sampler.samples
    peaks = sorted(sampler.worker_peaks.values())
    assert peaks and peaks[-1] <= 500 * MB, f"worker peaks (MB): {[p // MB for p in peaks]}"
    h = server.health()
    recycled = sum(w["generation"] - 1 for w in h["workers"])
    assert recycled >= 8, h["workers"]
    s = metric_samples(server)
    assert s[("cogvisor_predictions_total", (("kind", "prediction"), ("outcome", "succeeded")))] == 100
    assert recycles(s, "max_rss") >= 8, s
    assert refused == 0, f"{refused} answers 503"
    print(f"pool max_rss: {recycled} recycles, {refused} answers 503, worker peaks "
          f"{[p // MB for p in peaks][-3:]} MB, both workers together at most {sampler.peak // MB} MB")


def test_a_child_process_that_grows_is_counted_and_ended_with_the_worker(serve, tmp_path):
    # The end-of-prediction check reads the tree of the last scan; the periodic scan finds the child.
    server = serve(
        "leaker",
        env={"COGVISOR_RECYCLE_MAX_RSS": "300MB", "COGVISOR_RECYCLE_MEMORY_CHECK_INTERVAL": "200ms"},
    )
    pid_file = tmp_path / "child.pid"
    status, body = server.predict({"megabytes": 0, "child_megabytes": 400, "pid_file": str(pid_file)})
    assert status == 200 and body["status"] == "succeeded", body
    child = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), what="the child's pid"))
    server.track(child)

    def recycled():
        h = server.health()
        last = h["worker"].get("last_recycle")
        return h if h["status"] == "READY" and last else None

    h = wait_for(recycled, timeout=60, what="the memory recycle")
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "max_rss", last
    assert "processes, past recycle.max_rss" in last["reason"], last
    assert h["worker"]["generation"] == 2, h
    wait_for(lambda: not is_alive(child), timeout=30, what="the child to end with its worker")


def test_a_worker_past_the_bound_right_after_setup_is_not_recycled_in_a_loop(serve):
    # A Python worker (with its guard) holds ~50 MB after setup: past 10 MB already.
    server = serve(
        "leaker",
        env={"COGVISOR_RECYCLE_MAX_RSS": "10MB", "COGVISOR_RECYCLE_MEMORY_CHECK_INTERVAL": "100ms"},
    )
    wait_for(
        lambda: "is past recycle.max_rss" in server.stderr_text(),
        timeout=30,
        what="the error about the bound below the worker's size",
    )
    for _ in range(5):
        status, body = server.predict({"megabytes": 0})
        assert status == 200 and body["output"]["generation"] == 1, body
    h = server.health()
    assert h["worker"]["generation"] == 1 and "last_recycle" not in h["worker"], h
    # It is still recycled once it has grown by a whole bound past its size after setup.
    status, body = server.predict({"megabytes": 40})
    assert status == 200 and body["status"] == "succeeded", body
    status, body = predict_until_admitted(server, {"megabytes": 0})
    assert body["output"]["generation"] == 2, body
    last = server.health()["worker"]["last_recycle"]
    assert last["trigger"] == "max_rss" and "right after setup" in last["reason"], last


def _serve_args(model_dir: Path) -> list[str]:
    return ["serve", str(model_dir), "--host", "127.0.0.1", "--port", str(free_port())]


def _fake_nvidia_smi(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)


def test_max_gpu_memory_without_a_gpu_stops_the_start_naming_the_key(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_to_exit(
        _serve_args(MODELS / "leaker"),
        env={"COGVISOR_RECYCLE_MAX_GPU_MEMORY": "8GiB", "PATH": str(empty), "TMPDIR": str(tmp_path)},
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, stderr
    line = last_line(stderr)
    assert "recycle.max_gpu_memory is set, but no GPU is visible: nvidia-smi is not on PATH" in line, stderr


def test_max_gpu_memory_with_an_nvidia_smi_that_lists_no_gpu_stops_the_start(tmp_path):
    fake = tmp_path / "bin"
    _fake_nvidia_smi(fake, "echo 'No devices were found'; exit 6")
    result = run_to_exit(
        _serve_args(MODELS / "leaker"),
        env={
            "COGVISOR_RECYCLE_MAX_GPU_MEMORY": "8GiB",
            "PATH": f"{fake}:{os.environ['PATH']}",
            "TMPDIR": str(tmp_path),
        },
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 1, stderr
    line = last_line(stderr)
    assert "recycle.max_gpu_memory" in line and "No devices were found" in line, stderr


def test_a_worker_past_max_gpu_memory_is_recycled(serve, tmp_path):
    # The stand-in nvidia-smi lists one GPU and the compute apps the test writes into a file.
    apps = tmp_path / "apps.csv"
    apps.write_text("")
    fake = tmp_path / "bin"
    _fake_nvidia_smi(
        fake,
        f"""case "$1" in
  -L) echo 'GPU 0: Stand-in GPU (UUID: GPU-00000000)' ;;
  --query-compute-apps=pid,used_memory) cat '{apps}' ;;
  *) echo "unexpected arguments: $*" >&2; exit 2 ;;
esac""",
    )
    server = serve(
        "leaker",
        env={
            "PATH": f"{fake}:{os.environ['PATH']}",
            "COGVISOR_RECYCLE_MAX_GPU_MEMORY": "1GiB",
            "COGVISOR_RECYCLE_MEMORY_CHECK_INTERVAL": "200ms",
        },
    )
    worker = server.health()["worker"]["pid"]
    assert metric_samples(server)[("cogvisor_worker_gpu_memory_bytes", ())] == 0
    # 2 GiB for the worker on the GPU, and a process that is not ours (its pid exists here).
    apps.write_text(f"{worker}, 2048\n{os.getpid()}, 4096\n")

    def recycled():
        h = server.health()
        return h if h["status"] == "READY" and h["worker"]["generation"] == 2 else None

    h = wait_for(recycled, timeout=60, what="the GPU memory recycle")
    last = h["worker"]["last_recycle"]
    assert last["trigger"] == "max_gpu_memory" and last["succeeded"] is True, last
    assert last["reason"] == (
        "the worker's GPU memory is 2.00 GiB (2147483648 bytes) in 1 process, "
        "past recycle.max_gpu_memory 1.00 GiB (1073741824 bytes)"
    ), last
    assert recycles(metric_samples(server), "max_gpu_memory") == 1
