"""kill -9 of the model server while labels stream in: every label answered 200 is stored, whole.

Feedback segments are written under a hidden name, fsynced and renamed before /feedback answers, so
a label the server acknowledged survives its death, and a segment torn by the kill is never read.
A label whose request got no answer may or may not be stored: both are legitimate.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import httpx

from provenflow.serving.feedback import read_feedback
from tests.serving.conftest import bundles, recorded, records_of, start_server  # noqa: F401 (fixtures)
from tests.serving.test_limits import feature_names

CLIENTS = 4


def test_kill_9_while_labelling_loses_no_acknowledged_label(bundles, recorded, tmp_path):  # noqa: F811
    store = str(tmp_path / "store")
    server = start_server(bundles["forest"], store)
    records = records_of(recorded.frame.head(50), feature_names(bundles["forest"]))
    ids = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30).json()["ids"]
    acknowledged: dict[str, str] = {}  # the last label answered 200 per id
    lock = threading.Lock()
    killed = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as http:
            i = 0
            while not killed.is_set():
                # Each client labels its own ids, so "the latest acknowledged" is well defined per id.
                row_id = ids[(i * CLIENTS + n) % len(ids)]
                label = f"{'Adelie' if i % 2 else 'Gentoo'}"
                body = {
                    "labels": [{"id": row_id, "label": label}, {"id": f"ghost-{n}-{i}:0", "label": label}]
                }
                i += 1
                try:
                    answer = http.post("/feedback", json=body)
                except httpx.TransportError:
                    if killed.is_set():
                        return
                    raise
                if answer.status_code == 200:
                    assert answer.json()["unknown"] == 1, answer.text
                    with lock:
                        acknowledged[row_id] = label

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    kill_after = random.uniform(1.0, 3.0)  # printed on failure so the moment can be replayed
    time.sleep(kill_after)
    os.kill(server.process.pid, signal.SIGKILL)
    killed.set()
    for thread in threads:
        thread.join(timeout=30)
    server.process.wait(timeout=30)

    assert len(acknowledged) > 10, f"too few labels before the kill at {kill_after:.2f} s"
    name = recorded.models["forest"].split("@")[0]
    history = read_feedback(store, name, 1, history=True)  # raises on a torn segment
    stored = set(zip(history["request_id"], history["row"], history["label"], strict=True))
    for row_id, label in acknowledged.items():
        rid, row = row_id.rsplit(":", 1)
        assert (rid, int(row), label) in stored, (
            f"acknowledged label {row_id}={label} lost (kill at {kill_after:.2f} s)"
        )
    folder = os.path.join(store, "feedback", name, "1")
    # A kill mid-write leaves at most a hidden temporary file per client, which no reader opens.
    assert len([f for f in os.listdir(folder) if f.startswith(".")]) <= CLIENTS
