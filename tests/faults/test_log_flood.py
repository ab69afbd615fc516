"""50 MB of logs from one prediction, and a single 10 MB log line: the prediction completes, the
response keeps at most `logs.max_per_prediction` (8 MiB) with a notice that older text was dropped,
the long line is cut at 4 MiB with a notice, and the server's memory stays bounded (coglet put all
50 MB in the response and grew to 290 MB)."""

from __future__ import annotations

from faultlib import RssSampler, assert_valid_transitions, rss_kib, wait_no_temp_leftovers

MiB = 1024 * 1024
# The server's peak RSS may grow by at most this much over its idle size while serving the flood
# (measured: about 90 MiB, the same for 50 MB and 200 MB of logs; coglet grew by 250 MB and 1 GB).
RSS_GROWTH_LIMIT_KIB = 150 * 1024


def flood(f, **input):
    idle = rss_kib(f.server.pid)
    sampler = RssSampler(f.server.pid)
    sampler.start()
    status, body = f.predict(timeout=180, **input)
    peak = sampler.stop()
    return status, body, idle, peak


def test_fifty_megabytes_of_logs(start):
    f = start("faulty")
    recorder = f.record()
    pid = f.worker_pid()
    status, body, idle, peak = flood(f, mode="log_flood", megabytes=50)

    assert status == 200 and body["status"] == "succeeded", {k: v for k, v in body.items() if k != "logs"}
    logs = body["logs"]
    assert len(logs.encode()) <= 8 * MiB + 4096, len(logs)
    assert len(logs) > 4 * MiB, len(logs)
    assert "dropped" in logs[:4096], logs[:400]
    # What is kept is the end of the output, intact lines.
    assert logs.endswith("x" * 99 + "\n"), logs[-200:]
    assert peak - idle < RSS_GROWTH_LIMIT_KIB, f"server RSS grew from {idle} KiB to {peak} KiB"
    assert f.assert_serves()["pid"] == pid
    assert_valid_transitions(recorder.stop())
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()


def test_a_ten_megabyte_log_line(start):
    f = start("faulty")
    pid = f.worker_pid()
    status, body, idle, peak = flood(f, mode="long_line", megabytes=10)

    assert status == 200 and body["status"] == "succeeded", {k: v for k, v in body.items() if k != "logs"}
    logs = body["logs"]
    assert "log message truncated at 4 MiB" in logs, logs[-300:]
    longest = max(len(line) for line in logs.splitlines())
    assert 3 * MiB < longest <= 4 * MiB, longest
    assert peak - idle < RSS_GROWTH_LIMIT_KIB, f"server RSS grew from {idle} KiB to {peak} KiB"
    assert f.assert_serves()["pid"] == pid
    wait_no_temp_leftovers(f.tmpdir)
    f.stop_cleanly()
