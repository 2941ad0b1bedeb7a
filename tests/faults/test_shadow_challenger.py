"""A shadow challenger that is dead (SIGKILL) or hung (SIGSTOP) must cost the production server
nothing: its answers, their latency and its memory stay as they were; the lost copies are counted."""

from __future__ import annotations

import signal
import statistics
import time

import httpx

from tests.serving.conftest import bundles, recorded, records_of, start_server  # noqa: F401 (fixtures)
from tests.serving.test_app import feature_names
from tests.serving.test_shadow import pair, wait_counts  # noqa: F401 (fixture)


def test_a_dead_challenger_costs_production_nothing(pair, bundles, recorded):  # noqa: F811
    production, challenger = pair
    challenger.process.send_signal(signal.SIGKILL)
    challenger.process.wait(timeout=30)
    rows = records_of(recorded.frame.head(5), feature_names(bundles["forest"]))
    with httpx.Client(timeout=30) as client:
        for _ in range(20):
            assert client.post(f"{production.url}/predict", json={"records": rows}).status_code == 200
    counts = wait_counts(production.url, lambda c: c["failed"] + c["dropped"] == 20)
    assert counts["mirrored"] == 0
    assert httpx.get(f"{production.url}/ready", timeout=5).status_code == 200


def test_a_hung_challenger_neither_slows_production_nor_fills_its_memory(bundles, recorded, tmp_path):  # noqa: F811
    challenger = start_server(bundles["logistic"], str(tmp_path / "challenger"))
    production = start_server(
        bundles["forest"], str(tmp_path / "production"),
        env={"PROVENFLOW_SHADOW_URL": challenger.url, "PROVENFLOW_SHADOW_QUEUE": "5",
             "PROVENFLOW_SHADOW_TIMEOUT": "2"},
    )  # fmt: skip
    try:
        challenger.process.send_signal(signal.SIGSTOP)  # accepts connections (the kernel does), never answers
        rows = records_of(recorded.frame.head(5), feature_names(bundles["forest"]))
        latencies = []
        with httpx.Client(timeout=30) as client:
            for _ in range(60):
                started = time.perf_counter()
                assert client.post(f"{production.url}/predict", json={"records": rows}).status_code == 200
                latencies.append(time.perf_counter() - started)
        # Waiting for the challenger would take its 2 s timeout per request at least.
        assert statistics.median(latencies) < 0.5, latencies
        assert sum(latencies) < 30, latencies
        # 4 senders hang on a copy each (2 s), 5 copies wait in the queue, what comes meanwhile is dropped.
        counts = wait_counts(
            production.url, lambda c: sum(c[k] for k in ("timeout", "dropped", "failed")) == 60
        )
        assert counts["mirrored"] == 0 and counts["dropped"] >= 1 and counts["timeout"] >= 4
        assert counts["queued"] == 0

        challenger.process.send_signal(signal.SIGCONT)  # back: mirroring resumes by itself
        with httpx.Client(timeout=30) as client:
            for _ in range(5):
                assert client.post(f"{production.url}/predict", json={"records": rows}).status_code == 200
        wait_counts(production.url, lambda c: c["mirrored"] == 5)
    finally:
        challenger.process.send_signal(signal.SIGCONT)
        production.stop()
        challenger.stop()
