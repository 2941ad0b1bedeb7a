"""A bounded load test on loopback: several clients, then a clean shutdown; nothing lost, no 5xx."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import httpx
import orjson

from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import records_of, start_server

CLIENTS = 4
SECONDS = 5.0


def test_load_then_clean_shutdown_logs_every_prediction(bundles, recorded, tmp_path):
    names = [
        i["name"]
        for i in json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    ]
    rows = records_of(recorded.frame, names)
    good = [orjson.dumps(rows[i : i + size]) for i, size in ((0, 1), (10, 5), (40, 100))]
    bad = orjson.dumps([{**rows[0], "bill_length_mm": "long"}])
    server = start_server(
        bundles["forest"], str(tmp_path / "store"), extra=("--flush-rows", "2000", "--flush-seconds", "1")
    )
    statuses: Counter[int] = Counter()
    served = Counter()
    lock = threading.Lock()
    stop_at = time.monotonic() + SECONDS

    def client(seed: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            i = seed
            while time.monotonic() < stop_at:
                body = bad if i % 10 == 0 else good[i % len(good)]
                answer = http.post("/predict", content=body, headers={"content-type": "application/json"})
                with lock:
                    statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        served["rows"] += len(answer.json()["predictions"])
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    server.stop()
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) == {200, 422}
    frame, skipped = read_predictions(str(tmp_path / "store"), "penguins-forest", 1)
    assert skipped == [] and len(frame) == served["rows"] > 0
