"""kill -9 of the model server under load: every prediction it answered 200 is in the prediction log.

The server is the container's entry point (``python -m provenflow.serving``) with a real trained
forest and the default flush settings (a segment every 10,000 rows or 10 s), so without the
write-ahead file the last seconds of answered predictions would exist only in the dead process.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import httpx
import orjson

from provenflow.serving.predictlog import read_predictions
from tests.serving.conftest import bundles, recorded, records_of, start_server  # noqa: F401 (fixtures)

CLIENTS = 6
RATE = 300.0  # requests per second, over all clients


def load_until_killed(server, rows: list[dict], kill_after: float) -> tuple[set[str], int]:
    """Send ~RATE requests/s from CLIENTS threads; SIGKILL the server after ``kill_after`` s.
    Returns the request ids answered 200 and the number of requests sent."""
    answered: set[str] = set()
    sent = [0]
    lock = threading.Lock()
    start = time.perf_counter()
    killed = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            i = 0
            while not killed.is_set() or i == 0:
                scheduled = start + (i * CLIENTS + n) / RATE
                time.sleep(max(0.0, scheduled - time.perf_counter()))
                request_id = f"c{n}-{i}"
                body = orjson.dumps(rows[(i * 7 + n) % (len(rows) - 3) :][: 1 + i % 3])
                i += 1
                with lock:
                    sent[0] += 1
                try:
                    answer = http.post(
                        "/predict", content=body,
                        headers={"content-type": "application/json", "x-request-id": request_id},
                    )  # fmt: skip
                except httpx.TransportError:
                    if killed.is_set():
                        return
                    raise
                if answer.status_code == 200 and answer.json()["request_id"] == request_id:
                    with lock:
                        answered.add(request_id)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(kill_after)
    os.kill(server.process.pid, signal.SIGKILL)
    killed.set()
    for thread in threads:
        thread.join(timeout=30)
    server.process.wait(timeout=30)
    return answered, sent[0]


def test_kill_9_under_load_loses_no_answered_prediction(bundles, recorded, tmp_path):  # noqa: F811
    names = [
        i["name"]
        for i in json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    ]
    rows = records_of(recorded.frame, names)
    store = str(tmp_path / "store")
    kill_after = random.uniform(2.0, 5.0)  # a random moment, printed so a failure can be replayed
    server = start_server(bundles["forest"], store)
    answered, sent = load_until_killed(server, rows, kill_after)
    assert server.process.returncode == -signal.SIGKILL
    assert len(answered) >= 0.5 * RATE * kill_after, (len(answered), sent)

    # The next start recovers what the dead process left, before it reports ready.
    restarted = start_server(bundles["forest"], store)
    restarted.stop()
    frame, skipped = read_predictions(store, "penguins-forest", 1)
    logged = set(frame["request_id"]) if len(frame) else set()
    lost = answered - logged
    print(f"kill -9 after {kill_after:.2f} s: {sent} sent, {len(answered)} answered 200, "
          f"{len(answered & logged)} of them logged, {len(lost)} lost")  # fmt: skip
    assert skipped == [] and not lost, f"{len(lost)} of {len(answered)} answered predictions are not logged"
    assert not frame.duplicated(["request_id", "row"]).any(), "a recovered prediction was logged twice"


def test_the_drift_reader_recovers_without_a_restart(bundles, recorded, tmp_path):  # noqa: F811
    names = [
        i["name"]
        for i in json.loads((bundles["forest"] / "metadata.json").read_text())["signature"]["inputs"]
    ]
    rows = records_of(recorded.frame, names)
    store = str(tmp_path / "store")
    server = start_server(bundles["forest"], store)
    answered, _ = load_until_killed(server, rows, random.uniform(1.0, 2.0))
    first, _ = read_predictions(store, "penguins-forest", 1)  # what the drift monitor calls
    again, _ = read_predictions(store, "penguins-forest", 1)  # recovery ran once: nothing doubles
    assert answered <= set(first.get("request_id", [])) and len(again) == len(first)
    assert not again.duplicated(["request_id", "row"]).any()
