"""Serving benchmark: provenflow's model server (ONNX path, prediction logging on) against MLServer.

    .venv/bin/python bench/serving.py [--seconds 10] [--clients 4] [--skip-mlserver]

Both serve the same fitted pipeline (a 100-tree random forest on the penguins data) on loopback:
provenflow through ``python -m provenflow.serving`` (the container's command), MLServer 1.x with its
scikit-learn runtime from a venv of its own (``bench/.work/mlserver-venv``: it pins fastapi<0.116 and
cannot share ours; created on first use, skipped with the reason if it does not install).

Measured: in-process latency of one prediction (parse + predict) through scikit-learn and ONNX;
over HTTP, closed-loop throughput (rows/s, p50/p99) for batches of 1, 100 and 10,000 with N client
processes, and single-row latency at a fixed rate (500 requests/s; latency counted from the
scheduled send time, so a stalled server is not hidden). The load generators are separate
processes using http.client with keep-alive, and share the 2 cores with the server: the figures
are a floor for what the server alone could do.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from common import ROOT, WORK, console, machine_summary, record, scratch_dir, verdict
from rich.table import Table

MLSERVER_VENV = WORK / "mlserver-venv"
MLSERVER = MLSERVER_VENV / "bin" / "mlserver"
RESULT = WORK / "serving-result.json"
PENGUINS = ROOT / "provenflow" / "demo" / "penguins.csv"
ARROW = "application/vnd.apache.arrow.stream"


# -- the model -------------------------------------------------------------------------


def make_bundle(folder: Path) -> tuple[Path, list[dict]]:
    """Train and record a 100-tree forest with the core API, export its bundle; return rows to send."""
    import provenflow
    from provenflow.data import datasets
    from provenflow.modeling import training
    from provenflow.serving import export_bundle
    from provenflow.tracking.run import DatasetOutput, ModelOutput
    from provenflow.workspace import Workspace

    workspace = Workspace.open(f"sqlite:///{folder}/ledger.db", str(folder / "store"), fsync=False)
    frame = datasets.read_table(str(PENGUINS))
    with provenflow.start("penguins", kind="data", workspace=workspace) as run:
        table = datasets.store_table(workspace.store, frame)
        run.output(DatasetOutput("penguins", table.digest, table.size, table.uri, datasets.PARQUET))
    with provenflow.start("bench-forest", kind="model", workspace=workspace) as run:
        run.input(f"penguins@{table.digest.short}")  # its rows check the ONNX graph
        estimator = training.import_estimator(
            "sklearn.ensemble.RandomForestClassifier", {"n_estimators": 100}, 7
        )
        trained = training.train_and_evaluate(frame, "species", estimator, seed=7, test_size=0.25)
        blob = workspace.store.put_bytes(training.serialize(trained.pipeline))
        run.output(
            ModelOutput(
                name="bench-forest",
                digest=blob.digest,
                size=blob.size,
                uri=workspace.store.uri(blob.digest),
                format=training.MODEL_FORMAT,
                task=trained.task,
                signature=trained.signature,
            )
        )
    bundle = folder / "bundle"
    meta = export_bundle(workspace, "bench-forest@1", bundle)
    assert meta.onnx is not None, meta.onnx_reason
    names = [i["name"] for i in meta.signature["inputs"]]
    complete = frame[names].dropna()  # MLServer's V2 JSON has no null for numbers
    rows = [
        {c: (v.item() if hasattr(v, "item") else v) for c, v in zip(names, r, strict=True)}
        for r in complete.itertuples(index=False)
    ]
    return bundle, rows


def in_process_latency(bundle: Path, rows: list[dict]) -> dict[str, float]:
    """Median microseconds for parse + predict, per runtime and batch size."""
    from provenflow.serving.bundle import load_bundle
    from provenflow.serving.inputs import parse_request

    out = {}
    for runtime, use_onnx in (("sklearn", False), ("onnx", True)):
        model = load_bundle(bundle, use_onnx=use_onnx)
        assert model.runtime == runtime
        for size in (1, 100):
            body = orjson.dumps(rows[:size])
            times = []
            for _ in range(50 if runtime == "sklearn" else 2000):
                start = time.perf_counter()
                model.predict(parse_request(body, model.features, 100_000))
                times.append(time.perf_counter() - start)
            out[f"{runtime} {size} row(s)"] = float(np.median(times) * 1e6)
    # The floor for a 10,000-row batch: the model alone, on already decoded columns.
    model = load_bundle(bundle, use_onnx=True)
    batch = parse_request(orjson.dumps(_rows(rows, 10_000)), model.features, 100_000)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        model.predict(batch)
        times.append(time.perf_counter() - start)
    out["onnx predict only, 10000 rows"] = float(np.median(times) * 1e6)
    return out


# -- servers ---------------------------------------------------------------------------


@dataclass
class Endpoint:
    name: str
    port: int
    path: str
    bodies: dict[int, bytes]  # batch size -> request body
    process: subprocess.Popen | None = None
    # named extra scenarios: rows, body, headers (provenflow: 10,000 rows as JSON records and as Arrow)
    extra: dict[str, tuple[int, bytes, dict[str, str]]] | None = None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ours(bundle: Path, log_url: Path, rows: list[dict]) -> Endpoint:
    port = free_port()
    env = {**os.environ, "PROVENFLOW_PREDICTION_LOG_URL": str(log_url)}
    process = subprocess.Popen(
        [sys.executable, "-m", "provenflow.serving", "--bundle", str(bundle), "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # Columnar bodies, like MLServer's V2 requests (our records form costs ~1.5 µs more per row to parse).
    bodies = {n: orjson.dumps({"columns": _columns(_rows(rows, n))}) for n in (1, 100, 10_000)}
    big = _rows(rows, 10_000)
    extra = {
        "batch 10000 as JSON records": (10_000, orjson.dumps({"records": big}), {}),
        "batch 10000 as Arrow (in and out)": (
            10_000,
            arrow_stream(big),
            {"Content-Type": ARROW, "Accept": ARROW},
        ),
    }
    endpoint = Endpoint("provenflow (onnx, logging on)", port, "/predict", bodies, process, extra)
    _wait(endpoint, "/ready")
    return endpoint


def mlserver_ready() -> tuple[bool, str]:
    if MLSERVER.exists():
        return True, ""
    console.print(f"[bold]Installing mlserver + mlserver-sklearn into {MLSERVER_VENV} (once)...")
    import sklearn

    subprocess.run([sys.executable, "-m", "venv", "--clear", MLSERVER_VENV], check=True)
    # The same scikit-learn as ours, so MLServer unpickles the very same model.
    pip = subprocess.run(
        [MLSERVER_VENV / "bin" / "pip", "install", "--quiet", "mlserver", "mlserver-sklearn",
         f"scikit-learn=={sklearn.__version__}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if pip.returncode != 0 or not MLSERVER.exists():
        return False, f"mlserver did not install: {pip.stderr.strip()[-500:]}"
    return True, ""


def start_mlserver(bundle: Path, folder: Path, rows: list[dict]) -> Endpoint:
    import shutil

    model_dir = folder / "mlserver" / "forest"
    model_dir.mkdir(parents=True)
    shutil.copyfile(bundle / "model.pkl", model_dir / "model.joblib")  # joblib.load reads plain pickles
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "forest",
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib"},
            }
        )
    )
    port = free_port()
    (folder / "mlserver" / "settings.json").write_text(
        json.dumps(
            {
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": 0,
                "debug": False,
            }
        )
    )
    process = subprocess.Popen(
        [MLSERVER, "start", str(folder / "mlserver")],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bodies = {n: orjson.dumps(_v2_request(_rows(rows, n))) for n in (1, 100, 10_000)}
    endpoint = Endpoint("MLServer (sklearn runtime)", port, "/v2/models/forest/infer", bodies, process)
    _wait(endpoint, "/v2/health/ready", timeout=120)
    return endpoint


def _v2_request(rows: list[dict]) -> dict:
    inputs = []
    for name in rows[0]:
        values = [r[name] for r in rows]
        kind = "BYTES" if isinstance(values[0], str) else "FP64"
        inputs.append({"name": name, "shape": [len(values)], "datatype": kind,
                       "data": values if kind == "BYTES" else [float(v) for v in values]})  # fmt: skip
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def _columns(rows: list[dict]) -> dict[str, list]:
    return {name: [r[name] for r in rows] for name in rows[0]}


def _rows(rows: list[dict], n: int) -> list[dict]:
    return [rows[i % len(rows)] for i in range(n)]


def _wait(endpoint: Endpoint, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=1)
            conn.request("GET", path)
            probe = conn.getresponse()
            probe.read()
            if probe.status == 200:
                # One real request, so both sides are warm and answer correctly.
                status, _ = _post(conn, endpoint.path, endpoint.bodies[1])
                if status != 200:
                    raise RuntimeError(f"{endpoint.name} answered {status} to a valid request")
                return
        except OSError:
            pass
        except RuntimeError:
            stop(endpoint)
            raise
        time.sleep(0.2)
    stop(endpoint)
    raise RuntimeError(f"{endpoint.name} did not become ready within {timeout} s")


def stop(endpoint: Endpoint) -> None:
    if endpoint.process and endpoint.process.poll() is None:
        endpoint.process.send_signal(signal.SIGTERM)
        endpoint.process.wait(timeout=60)


# -- load ------------------------------------------------------------------------------


def _post(
    conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    return response.status, response.read()


def _client(
    port: int, path: str, body: bytes, seconds: float, rate: float | None, queue: mp.Queue, headers: dict
) -> None:
    """Closed loop (rate None) or a fixed rate; latencies from the scheduled send time."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies, errors = [], 0
    start = time.perf_counter()
    i = 0
    while True:
        scheduled = start + i / rate if rate else time.perf_counter()
        if scheduled - start > seconds:
            break
        delay = scheduled - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        status, _ = _post(conn, path, body, headers)
        latencies.append(time.perf_counter() - scheduled)
        errors += status != 200
        i += 1
    queue.put((latencies, errors, time.perf_counter() - start))


def load(
    endpoint: Endpoint, batch: int | str, seconds: float, clients: int, rate: float | None = None
) -> dict:
    queue: mp.Queue = mp.Queue()
    per_client = rate / clients if rate else None
    if isinstance(batch, str):  # a named scenario (Endpoint.extra)
        batch, body, headers = endpoint.extra[batch]
    else:
        body, headers = endpoint.bodies[batch], {}
    procs = [
        mp.Process(
            target=_client,
            args=(endpoint.port, endpoint.path, body, seconds, per_client, queue, headers),
        )
        for _ in range(clients)
    ]
    for p in procs:
        p.start()
    results = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    latencies = np.concatenate([np.array(r[0]) for r in results])
    elapsed = max(r[2] for r in results)
    return {
        "requests": len(latencies),
        "errors": int(sum(r[1] for r in results)),
        "requests_per_s": len(latencies) / elapsed,
        "rows_per_s": len(latencies) * batch / elapsed,
        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
    }


def scenarios(endpoint: Endpoint, seconds: float, clients: int, rounds: int = 3) -> dict[str, dict]:
    out = {}
    for batch in (1, 100, 10_000):
        out[f"batch {batch}, {clients} clients"] = load(endpoint, batch, seconds, clients)
    out["1 row at 500 req/s"] = load(endpoint, 1, seconds, clients, rate=500.0)
    # The named scenarios are compared with each other (Arrow ÷ JSON records): interleaved in rounds, so
    # that a change of load on a shared machine hits both alike; each round's figures are kept.
    runs: dict[str, list[dict]] = {name: [] for name in endpoint.extra or {}}
    for _ in range(rounds):
        for name in runs:
            runs[name].append(load(endpoint, name, seconds, clients))
    for name, done in runs.items():
        out[f"{name}, {clients} clients"] = combined(done)
    return out


def combined(runs: list[dict]) -> dict:
    """Rounds of one scenario as one: counts summed, rates and percentiles the median of the rounds'."""
    out = {key: float(np.median([r[key] for r in runs])) for key in ("requests_per_s", "rows_per_s", "p50_ms", "p99_ms")}
    out.update(requests=sum(r["requests"] for r in runs), errors=sum(r["errors"] for r in runs),
               rounds=[r["rows_per_s"] for r in runs])  # fmt: skip
    return out


def arrow_stream(rows: list[dict]) -> bytes:
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


# -- main ------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load scenario")
    parser.add_argument("--clients", type=int, default=4, help="load generator processes")
    parser.add_argument("--skip-mlserver", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the JSON-records/Arrow pair")
    args = parser.parse_args()
    console.print(machine_summary())
    results: dict = {"machine": machine_summary(), "servers": {}}
    with scratch_dir("serving") as folder:
        bundle, rows = make_bundle(folder)
        results["in_process_us"] = in_process_latency(bundle, rows)
        ours = start_ours(bundle, folder / "predictions", rows)
        try:
            results["servers"][ours.name] = scenarios(ours, args.seconds, args.clients, args.rounds)
        finally:
            stop(ours)
        results["logged_rows"] = _logged_rows(folder / "predictions")
        results["served_rows"] = (
            sum(
                s["requests"] * b
                for s, b in zip(
                    results["servers"][ours.name].values(), (1, 100, 10_000, 1, 10_000, 10_000), strict=True
                )
            )
            + 1
        )  # + the warm-up request
        if args.skip_mlserver:
            results["mlserver"] = "skipped (--skip-mlserver)"
        else:
            ok, why = mlserver_ready()
            if not ok:
                results["mlserver"] = why
            else:
                peer = start_mlserver(bundle, folder, rows)
                try:
                    results["servers"][peer.name] = scenarios(peer, args.seconds, args.clients, args.rounds)
                finally:
                    stop(peer)
    RESULT.write_text(json.dumps(results, indent=2))
    report(results)


def _logged_rows(store: Path) -> int:
    from provenflow.serving import read_predictions

    frame, skipped = read_predictions(str(store), "bench-forest", 1)
    assert not skipped, skipped
    return len(frame)


def report(results: dict) -> None:
    table = Table(title="in-process: parse + predict, median µs")
    table.add_column("case")
    table.add_column("µs", justify="right")
    for case, us in results["in_process_us"].items():
        table.add_row(case, f"{us:,.1f}")
    console.print(table)
    table = Table(title="over HTTP on loopback (load generators share the 2 cores)")
    for column in ("server", "scenario", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column in ("server", "scenario") else "right")
    for server, runs in results["servers"].items():
        for scenario, r in runs.items():
            table.add_row(server, scenario, f"{r['requests_per_s']:,.0f}", f"{r['rows_per_s']:,.0f}",
                          f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", str(r["errors"]))  # fmt: skip
    console.print(table)
    console.print(f"prediction log: {results['logged_rows']} rows logged, {results['served_rows']} served")
    if "mlserver" in results:
        console.print(f"MLServer: {results['mlserver']}")
    ours = next(iter(results["servers"].values()))
    fixed = ours["1 row at 500 req/s"]
    console.print(
        f"p99 ≤ 5 ms for single rows at 500 req/s: {verdict(fixed['p99_ms'] <= 5.0)} ({fixed['p99_ms']:.2f} ms; "
        "the generators share the cores here: bench/serving_tail.py measures it open loop, with its floor)"
    )
    if len(results["servers"]) == 2:
        peer = list(results["servers"].values())[1]
        for batch, factor in (("1", 2.0), ("10000", 1.0)):
            key = next(k for k in ours if k.startswith(f"batch {batch},"))
            met = ours[key]["rows_per_s"] >= factor * peer[key]["rows_per_s"]
            console.print(f"batch-{batch} throughput ≥ {factor:g}× MLServer's: {verdict(met)}")
            ratio = ours[key]["rows_per_s"] / peer[key]["rows_per_s"]
            record(f"serving: batch {batch} rows/s ÷ MLServer's", ratio, "×", target=factor, better="higher")
    if any("as Arrow" in k for k in ours):
        arrow_run = ours[next(k for k in ours if "as Arrow" in k)]
        records_run = ours[next(k for k in ours if "as JSON records" in k)]
        arrow = arrow_run["rows_per_s"]
        ratios = [a / r for a, r in zip(arrow_run["rounds"], records_run["rounds"], strict=True)]
        ratio = float(np.median(ratios))
        floor = 10_000 / (results["in_process_us"]["onnx predict only, 10000 rows"] / 1e6)
        console.print(f"10,000 rows as Arrow: {arrow:,.0f} rows/s (JSON records {records_run['rows_per_s']:,.0f}) = "
                      f"{ratio:.2f}× JSON records (median of "
                      f"{len(ratios)} interleaved rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target 3×), "
                      f"{arrow / floor:.2f}× the model's in-process floor of {floor:,.0f} (target 0.5×)")  # fmt: skip
        record("serving: 10,000 rows as Arrow ÷ as JSON records, same server", ratio, "×", target=3.0,
               better="higher", peer="JSON records", note=f"median of {len(ratios)} interleaved rounds")  # fmt: skip
        record("serving: 10,000 rows as Arrow ÷ the model's in-process floor", arrow / floor, "×", target=0.5,
               better="higher", peer="ONNX predict in-process")  # fmt: skip
    record("serving: batch 1 throughput, closed loop (4 http.client processes)",
           ours[next(k for k in ours if k.startswith("batch 1,"))]["requests_per_s"], "req/s", better="higher")  # fmt: skip
    console.print(f"[dim]results in {RESULT}")


if __name__ == "__main__":
    main()
