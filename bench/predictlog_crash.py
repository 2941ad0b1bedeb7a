"""Prediction log under a crash: answered vs logged after kill -9 at 300 req/s, and what write-through costs.

    .venv/bin/python bench/predictlog_crash.py [--seconds 5]
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/predictlog_crash.py   # the same for another tree

Measured on the tree whose ``provenflow`` is imported (the server runs from that tree too):

1. in-process, ``PredictionLog.append`` of one-row requests (20,000 of them): p50/p99 µs. Write-through
   puts its whole cost here (orjson + one writev), so the p99 difference between two trees is what
   it adds to a request; with ``--fsync`` also the cost of an fsync per request.
2. over HTTP, single rows at a fixed 300 requests/s for ``--seconds`` from 2 client processes
   (``bench/serving.py``'s load generator; latency from the scheduled send time): p50/p99 ms.
3. then 300 requests/s from 6 threads, the server gets SIGKILL at a random moment 1-2 s in, and
   the log is read back (which recovers what the dead process left): answered 200 vs logged ids.
Default flush settings throughout (a segment every 100,000 rows or 10 s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import orjson
from common import console, record
from serving import Endpoint, free_port, load, make_bundle

import provenflow

TREE = Path(provenflow.__file__).resolve().parents[1]
RATE, CLIENTS = 300.0, 6


def append_cost(bundle: Path, rows: list[dict], folder: Path, fsync: bool) -> tuple[float, float]:
    from provenflow.serving.bundle import load_bundle
    from provenflow.serving.inputs import parse_request
    from provenflow.serving.predictlog.log import PredictionLog

    model = load_bundle(bundle)
    batch = parse_request(orjson.dumps(rows[:1]), model.features, 10)
    predictions = model.predict(batch)
    meta = model.metadata
    extra = {"fsync": True} if fsync else {}
    log = PredictionLog(
        str(folder), meta.name, meta.version, meta.hash, model.features, meta.classes,
        flush_rows=10_000, flush_seconds=10.0, **extra,
    ).start()  # fmt: skip
    times = []
    try:
        for i in range(2_000 if fsync else 20_000):
            start = time.perf_counter()
            log.append(f"r{i}", batch, predictions)
            times.append(time.perf_counter() - start)
    finally:
        log.close()
    return float(np.percentile(times, 50) * 1e6), float(np.percentile(times, 99) * 1e6)


def start_server(bundle: Path, store: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PROVENFLOW_PREDICTION_LOG_URL": str(store)}
    process = subprocess.Popen(
        [sys.executable, "-m", "provenflow.serving", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", str(port)],
        cwd=TREE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not become ready")


def load_then_kill(process: subprocess.Popen, url: str, rows: list[dict], kill_after: float) -> dict:
    answered: set[str] = set()
    lock, killed = threading.Lock(), threading.Event()
    start = time.perf_counter()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=5) as http:
            i = 0
            while not killed.is_set():
                scheduled = start + (i * CLIENTS + n) / RATE
                time.sleep(max(0.0, scheduled - time.perf_counter()))
                rid, body = f"c{n}-{i}", orjson.dumps([rows[(i * CLIENTS + n) % len(rows)]])
                i += 1
                try:
                    answer = http.post("/predict", content=body,
                                       headers={"content-type": "application/json", "x-request-id": rid})  # fmt: skip
                except httpx.TransportError:
                    return
                if answer.status_code == 200:
                    with lock:
                        answered.add(rid)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(kill_after)
    process.send_signal(signal.SIGKILL)
    killed.set()
    for thread in threads:
        thread.join()
    process.wait()
    return {"answered": answered, "kill_at": kill_after}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the fixed-rate latency run")
    parser.add_argument("--fsync", action="store_true", help="also measure append with an fsync per request")
    args = parser.parse_args()
    console.print(f"tree: {TREE}")
    with tempfile.TemporaryDirectory(prefix="provenflow-bench-") as tmp:
        folder = Path(tmp)
        bundle, rows = make_bundle(folder)
        p50, p99 = append_cost(bundle, rows, folder / "inproc", fsync=False)
        record("prediction log: append, one row, in-process p99", p99, "µs", better="lower")
        console.print(f"append, one row, in-process: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        if args.fsync:
            p50, p99 = append_cost(bundle, rows, folder / "inproc-fsync", fsync=True)
            console.print(f"append with fsync per request: p50 {p50:.1f} µs, p99 {p99:.1f} µs")
        store = folder / "store"
        process, url = start_server(bundle, store)
        endpoint = Endpoint(
            "server", int(url.rsplit(":", 1)[1]), "/predict", {1: orjson.dumps(rows[:1])}, process
        )
        timed = load(endpoint, 1, args.seconds, clients=2, rate=RATE)
        result = load_then_kill(process, url, rows, random.uniform(1.0, 2.0))
        from provenflow.serving.predictlog.reading import read_predictions

        frame, skipped = read_predictions(str(store), "bench-forest", 1)
        logged = set(frame["request_id"]) if len(frame) else set()
        answered = result["answered"]
        console.print(
            f"HTTP, 1 row at {RATE:.0f} req/s for {args.seconds:g} s: "
            f"p50 {timed['p50_ms']:.2f} ms, p99 {timed['p99_ms']:.2f} ms, {timed['errors']} errors"
        )
        console.print(
            f"kill -9 at {result['kill_at']:.2f} s: {len(answered)} answered 200, "
            f"{len(answered & logged)} logged, {len(answered - logged)} lost"
            + (f" ({len(skipped)} unreadable segments)" if skipped else "")
        )
        record(
            "prediction log: answered but lost after kill -9", len(answered - logged), "requests", target=0
        )
        print(
            json.dumps({"p99_ms": timed["p99_ms"], "answered": len(answered), "lost": len(answered - logged)})
        )


if __name__ == "__main__":
    main()
