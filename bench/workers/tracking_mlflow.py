"""MLflow side of bench/tracking.py: one run with N metrics and M artifacts, timed in-process.

Local tracking with a SQLite backend store in the current (fresh scratch) folder. ``--batch``
logs the metrics with one ``MlflowClient.log_batch`` call instead of one ``log_metric`` each.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric


def make_inputs(folder: Path, count: int, kib: int) -> list[Path]:
    """Fresh random files, as on provenflow's side."""
    folder.mkdir()
    paths = [folder / f"input-{i}.bin" for i in range(count)]
    for path in paths:
        path.write_bytes(os.urandom(kib * 1024))
    return paths


def log_metrics_per_call(run_id: str, metrics: int) -> None:
    for i in range(metrics):
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)


def log_metrics_batch(run_id: str, metrics: int) -> None:
    timestamp = int(time.time() * 1000)
    batch = [Metric("loss", 1.0 / (i + 1), timestamp, i) for i in range(metrics)]
    MlflowClient().log_batch(run_id, metrics=batch)


def one_run(inputs: list[Path], metrics: int, log_metrics) -> tuple[float, str]:
    """Seconds from starting the run (the first one creates the database) to its end."""
    started = time.perf_counter()
    with mlflow.start_run() as run:
        mlflow.log_param("lr", 0.1)
        for path in inputs:
            mlflow.log_artifact(str(path))
        log_metrics(run.info.run_id, metrics)
    return time.perf_counter() - started, run.info.run_id


def recorded(run_id: str) -> dict:
    client = MlflowClient()
    return {
        "metrics": len(client.get_metric_history(run_id, "loss")),
        "inputs": len(client.list_artifacts(run_id)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, required=True)
    parser.add_argument("--metrics", type=int, required=True)
    parser.add_argument("--inputs", type=int, required=True)
    parser.add_argument("--input-kib", type=int, required=True)
    parser.add_argument("--batch", action="store_true")
    args = parser.parse_args()

    tmp = Path.cwd()
    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")  # lazy: the first run opens the store
    log_metrics = log_metrics_batch if args.batch else log_metrics_per_call
    times = []
    for rep in range(args.reps + 1):  # the first is the cold run: it creates and migrates the database
        inputs = make_inputs(tmp / f"inputs-{rep}", args.inputs, args.input_kib)
        seconds, run_id = one_run(inputs, args.metrics, log_metrics)
        times.append(seconds)
    print(
        json.dumps(
            {
                "tool": "mlflow",
                "version": mlflow.__version__,
                "cold_s": times[0],
                "warm_s": times[1:],
                "last_run": recorded(run_id),
            }
        )
    )


if __name__ == "__main__":
    main()
