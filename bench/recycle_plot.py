"""What a recycle costs, as a picture: docs/img/recycle.png (`make recycle-plot`).

Serves bench/models/loader (setup 1 s, standing for loading weights; a prediction 20 ms) with
`--recycle-max-predictions N`, drives it with one steady client (back-to-back sync predictions; after a
503 it waits 50 ms and sends the next) for --seconds, polls /health-check every 50 ms, and plots over time:
predictions answered per second, 503s per second, the latency of each prediction, and the health state.
Prints the numbers docs/recycling.md quotes. Needs matplotlib (the Makefile installs it into the private
venv bench/.venv-plot); not part of `make test`. Talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "bench" / "models" / "loader"

STATE_COLORS = {
    "STARTING": "#9ecae1",
    "READY": "#a1d99b",
    "BUSY": "#fdd0a2",
    "UNHEALTHY": "#fc9272",
    "RECYCLING": "#bcbddc",
    "SETUP_FAILED": "#de2d26",
    "DEFUNCT": "#67000d",
}


@dataclass
class Request:
    start: float
    end: float
    status: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def health(port: int) -> dict:
    status, body = call(port, "GET", "/health-check", timeout=10)
    if status != 200:
        raise RuntimeError(f"/health-check answered {status}")
    return json.loads(body)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"cogvisor exited with {proc.returncode} before READY")
        try:
            if health(port)["status"] == "READY":
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"cogvisor was not READY within {timeout} s")


def client(port: int, t0: float, stop: threading.Event, out: list[Request]) -> None:
    body = json.dumps({"input": {"text": "x"}}).encode()
    while not stop.is_set():
        start = time.monotonic()
        try:
            status, _ = call(port, "POST", "/predictions", body)
        except OSError:
            status = 0
        end = time.monotonic()
        out.append(Request(start - t0, end - t0, status))
        if status != 200:
            time.sleep(0.05)


def poller(port: int, t0: float, stop: threading.Event, out: list[tuple[float, str]]) -> None:
    while not stop.is_set():
        try:
            state = health(port)["status"]
        except (OSError, RuntimeError, ValueError):
            state = "UNREACHABLE"
        out.append((time.monotonic() - t0, state))
        time.sleep(0.05)


def metric(port: int, name: str) -> float:
    _, body = call(port, "GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def spans(states: list[tuple[float, str]], end: float) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []
    for i, (t, s) in enumerate(states):
        nxt = states[i + 1][0] if i + 1 < len(states) else end
        if out and out[-1][2] == s:
            out[-1] = (out[-1][0], nxt, s)
        else:
            out.append((t, nxt, s))
    return out


def run(args: argparse.Namespace) -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="recycle-plot-") as tmp:
        env = dict(os.environ, TMPDIR=tmp, LOADER_SETUP_SECONDS=str(args.setup), LOG_FORMAT="console")
        env.pop("PORT", None)
        stderr_path = Path(tmp) / "cogvisor.stderr"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [args.bin, "serve", str(MODEL), "--host", "127.0.0.1", "--port", str(port),
                 "--python", sys.executable, "--recycle-max-predictions", str(args.max_predictions)],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                start_new_session=True,
            )
        try:
            wait_ready(port, proc)
            requests: list[Request] = []
            states: list[tuple[float, str]] = []
            stop = threading.Event()
            t0 = time.monotonic()
            threads = [threading.Thread(target=client, args=(port, t0, stop, requests)),
                       threading.Thread(target=poller, args=(port, t0, stop, states))]
            for t in threads:
                t.start()
            time.sleep(args.seconds)
            stop.set()
            for t in threads:
                t.join(timeout=60)
            duration = time.monotonic() - t0
            final = health(port)
            recycle_sum = metric(port, "cogvisor_worker_recycle_duration_seconds_sum")
            recycle_count = metric(port, "cogvisor_worker_recycle_duration_seconds_count")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        except BaseException:
            sys.stderr.write(stderr_path.read_text(errors="replace")[-4000:])
            raise
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {"requests": requests, "states": states, "duration": duration, "final": final,
            "recycle_sum": recycle_sum, "recycle_count": recycle_count}


def summarize(r: dict, args: argparse.Namespace) -> dict:
    reqs: list[Request] = r["requests"]
    ok = [q for q in reqs if q.status == 200]
    refused = [q for q in reqs if q.status == 503]
    other = [q for q in reqs if q.status not in (200, 503)]
    recycling = [(a, b) for a, b, s in spans(r["states"], r["duration"]) if s == "RECYCLING"]
    lat = sorted((q.end - q.start) * 1000 for q in ok)
    in_recycle = sum(b - a for a, b in recycling)
    return {
        "seconds": round(r["duration"], 1),
        "max_predictions": args.max_predictions,
        "setup_seconds": args.setup,
        "requests": len(reqs),
        "succeeded": len(ok),
        "status_503": len(refused),
        "other_status": sorted({q.status for q in other}),
        "recycles": int(r["recycle_count"]),
        "recycle_seconds_mean": round(r["recycle_sum"] / r["recycle_count"], 2) if r["recycle_count"] else None,
        "recycling_share_of_time": round(in_recycle / r["duration"], 3),
        "predictions_per_second": round(len(ok) / r["duration"], 1),
        "latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
        "latency_ms_p99": round(lat[int(0.99 * (len(lat) - 1))], 1) if lat else None,
        "latency_ms_max": round(lat[-1], 1) if lat else None,
        "last_recycle": r["final"]["worker"].get("last_recycle"),
        "generation": r["final"]["worker"].get("generation"),
    }


def plot(r: dict, summary: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    reqs: list[Request] = r["requests"]
    duration = r["duration"]
    width = 0.5
    bins = [i * width for i in range(int(duration / width) + 2)]

    def per_second(times: list[float]) -> list[float]:
        counts = [0] * (len(bins) - 1)
        for t in times:
            i = int(t / width)
            if 0 <= i < len(counts):
                counts[i] += 1
        return [c / width for c in counts]

    ok_rate = per_second([q.end for q in reqs if q.status == 200])
    refused_rate = per_second([q.end for q in reqs if q.status == 503])
    state_spans = spans(r["states"], duration)

    fig, (ax_rate, ax_lat, ax_state) = plt.subplots(
        3, 1, figsize=(11, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2, 0.7]})
    first_recycle = next((a for a, _, s in state_spans if s == "RECYCLING"), None)
    for ax in (ax_rate, ax_lat):
        for a, b, s in state_spans:
            if s == "RECYCLING":
                ax.axvspan(a, b, color=STATE_COLORS["RECYCLING"], alpha=0.5, lw=0,
                           label="RECYCLING" if ax is ax_rate and a == first_recycle else None)
    mids = [b + width / 2 for b in bins[:-1]]
    ax_rate.step(mids, ok_rate, where="mid", color="#238b45", lw=1.8, label="predictions answered 200 per second")
    ax_rate.bar(mids, refused_rate, width=width * 0.9, color="#cb181d", alpha=0.8,
                label="503 (recycling) per second; the client retries after 50 ms")
    ax_rate.set_ylabel("per second")
    ax_rate.set_ylim(0, max(ok_rate + refused_rate + [1]) * 1.4)
    ax_rate.legend(loc="upper center", ncol=3, fontsize=9, framealpha=0.95)
    ax_rate.grid(axis="y", alpha=0.3)
    ax_rate.set_title(
        f"cogvisor, one steady client, recycle.max_predictions = {summary['max_predictions']}, "
        f"setup {summary['setup_seconds']:g} s: {summary['recycles']} recycles in {summary['seconds']:g} s, "
        f"{summary['recycle_seconds_mean']} s each, {summary['status_503']} × 503",
        fontsize=10)

    ok = [q for q in reqs if q.status == 200]
    ax_lat.scatter([q.end for q in ok], [(q.end - q.start) * 1000 for q in ok], s=4, color="#2171b5",
                   label="latency of each 200")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_ylim(bottom=0)
    ax_lat.grid(axis="y", alpha=0.3)
    ax_lat.legend(loc="upper right", fontsize=9, framealpha=0.9)

    for a, b, s in state_spans:
        ax_state.axvspan(a, b, color=STATE_COLORS.get(s, "#636363"), lw=0)
    ax_state.set_yticks([])
    ax_state.set_ylabel("health", rotation=0, ha="right", va="center")
    seen = [s for s in STATE_COLORS if any(sp[2] == s for sp in state_spans)]
    ax_state.legend(handles=[Patch(color=STATE_COLORS[s], label=s) for s in seen], loc="upper center",
                    bbox_to_anchor=(0.5, -0.6), ncol=len(seen), fontsize=9, frameon=False)
    ax_state.set_xlabel("seconds since the client started")
    ax_state.set_xlim(0, duration)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=str(REPO / "target" / "release" / "cogvisor"), help="the cogvisor binary")
    p.add_argument("--seconds", type=float, default=30, help="how long the client runs (default 30)")
    p.add_argument("--max-predictions", type=int, default=150, help="recycle.max_predictions (default 150)")
    p.add_argument("--setup", type=float, default=1.0, help="seconds the model's setup() takes (default 1)")
    p.add_argument("--out", default=str(REPO / "docs" / "img" / "recycle.png"), help="the PNG to write")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args()
    if not os.access(args.bin, os.X_OK):
        print(f"recycle_plot: no cogvisor binary at {args.bin} (make build)", file=sys.stderr)
        return 1
    r = run(args)
    summary = summarize(r, args)
    plot(r, summary, Path(args.out))
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"recycle_plot: wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
