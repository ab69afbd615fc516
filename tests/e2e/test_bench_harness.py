"""Smoke test of the benchmark harness (bench/run.py): one short scenario against cogvisor only.

The full comparison with coglet is `make bench`, not part of the test suite; this checks that the
harness runs end to end on the real binary and reports in the documented format.
"""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import BIN, REPO

RUN = REPO / "bench" / "run.py"


def run_bench(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), "--cogvisor", str(BIN), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_one_scenario_for_cogvisor_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = run_bench(
        "--servers", "cogvisor", "--only", "trivial_sync_1,hc_start_delay",
        "--rounds", "1", "--duration", "1", "--json", str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]

    lines = done.stdout.splitlines()
    assert lines[0].startswith("cogvisor vs peer: 1 rounds × 1 s, medians")
    assert "| scenario | metric | cogvisor | peer | ratio c/p | target | met |" in lines
    rps_line = next(x for x in lines if x.startswith("| trivial sync, 1 client | successful req/s (req/s) |"))
    cells = [c.strip() for c in rps_line.strip("|").split("|")]
    assert float(cells[2]) > 0, rps_line
    assert cells[3] == "—" and cells[4] == "—", "no peer ran, so no peer value and no ratio"

    report = json.loads(out.read_text())
    rows = {(r["scenario"], r["metric"]): r for r in report["rows"]}
    assert set(report) == {"rounds", "duration", "elapsed_s", "rows", "notes"}
    assert report["notes"] == []  # only the 50 ms async scenario adds one (the machine's ceiling)
    assert rows[("trivial sync, 1 client", "successful req/s")]["median"]["cogvisor"] > 0
    assert list(rows[("trivial sync, 1 client", "successful req/s")]["median"]) == ["cogvisor"]
    # cogvisor never answers 409 to a single back-to-back client, and leaves nothing behind.
    assert rows[("trivial sync, 1 client", "409 responses")]["median"]["cogvisor"] == 0
    assert rows[("trivial sync, 1 client", "failed + errors")]["median"]["cogvisor"] == 0
    assert rows[("after every stop", "files left in temp dirs")]["median"]["cogvisor"] == 0
    assert rows[("after every stop", "processes left")]["median"]["cogvisor"] == 0
    assert rows[("after every stop", "servers stopped")]["median"]["cogvisor"] == 2
    delay = rows[("prediction during a 3 s user healthcheck", "start delay")]
    # The prediction is not held behind the 3 s healthcheck (the 50 ms target is for `make bench`, on
    # a quiet machine; a smoke test on a busy one only checks it was not blocked).
    assert len(delay["values"]["cogvisor"]) == 1 and 0 <= delay["values"]["cogvisor"][0] < 1000, delay


def test_async_sleep_scenario_notes_the_machines_ceiling(tmp_path):
    out = tmp_path / "bench.json"
    done = run_bench(
        "--servers", "cogvisor", "--only", "async_sleep_8", "--rounds", "1", "--duration", "1", "--json", str(out),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    (note,) = report["notes"]
    assert note.startswith("async sleep 50 ms, 8 clients: the machine's ceiling"), note
    percent = float(note.split("reaches ")[1].split("%")[0])
    assert 10 < percent <= 101, note  # a bare sleeping server cannot beat the ideal by more than rounding
    assert f"* {note}" in done.stdout
    rows = {(r["scenario"], r["metric"]): r for r in report["rows"]}
    assert rows[("after every stop", "servers stopped")]["median"]["cogvisor"] == 1  # the ceiling server is not counted


def test_unknown_scenario_is_named_in_the_error():
    done = run_bench("--servers", "cogvisor", "--only", "trivial_sync_1,nope", timeout=30)
    assert done.returncode == 2
    assert "unknown scenario(s) nope" in done.stderr
