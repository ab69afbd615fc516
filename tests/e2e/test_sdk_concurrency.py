"""Concurrency and logs: async predictions share one event loop across slots with their prints routed
to their own prediction; a sync predictor with more than one slot fails setup."""

import threading

from helpers import assert_succeeded


def test_concurrent_async_predictions_keep_their_own_logs(serve):
    server = serve("async-stream")
    assert server.health()["slots"]["total"] == 4, "from @concurrent(max=4)"
    results = {}

    def run(name):
        prompt = " ".join(f"{name}{i}" for i in range(8))
        results[name] = server.predict({"prompt": prompt, "delay": 0.02})

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for name in ("a", "b", "c"):
        status, body = results[name]
        assert_succeeded(status, body)
        prompt = " ".join(f"{name}{i}" for i in range(8))
        assert body["output"] == [f"{name}{i} " for i in range(8)]
        assert body["logs"] == "".join(f"[{prompt}] {name}{i}\n" for i in range(8)), body["logs"]


def test_sync_predictor_with_two_slots_fails_setup(serve):
    server = serve("hello", env={"COG_MAX_CONCURRENCY": "2"}, wait="SETUP_FAILED")
    h = server.health()
    assert "COG_MAX_CONCURRENCY > 1 requires an async run() or predict() method" in h["setup"]["logs"], h

