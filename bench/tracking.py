"""Benchmark: a run that records 1,000 metrics and 10 inputs — provenflow vs MLflow.

    .venv/bin/python bench/tracking.py [--reps 5] [--metrics 1000] [--inputs 10] [--input-kib 64]

Each side runs in its own subprocess and fresh scratch folder and times itself. The first run
is reported as "cold" (it creates and migrates the database: provenflow's ledger, MLflow's
SQLite store); then ``--reps`` more runs in the same process give the warm median.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from statistics import median

from common import (
    OUR_PYTHON,
    console,
    machine_summary,
    peers_python,
    record,
    run_worker,
    scratch_dir,
    verdict,
)
from rich.table import Table

TARGET = 10.0  # the target: provenflow at least 10x faster than MLflow's per-call log_metric


@dataclass
class Side:
    label: str
    version: str
    cold: float
    warm: float
    recorded: dict


def measure(label: str, python, worker: str, args: argparse.Namespace, *extra: str) -> Side:
    with scratch_dir(worker) as tmp:
        console.print(f"running {label} ...")
        result = run_worker(
            python, worker, tmp,
            "--reps", str(args.reps), "--metrics", str(args.metrics),
            "--inputs", str(args.inputs), "--input-kib", str(args.input_kib), *extra,
        )  # fmt: skip
    return Side(label, result["version"], result["cold_s"], median(result["warm_s"]), result["last_run"])


def report(ours: Side, peers: list[Side], args: argparse.Namespace) -> None:
    table = Table(
        title=f"A run recording {args.metrics} metrics and {args.inputs} inputs of {args.input_kib} KiB "
        f"(warm = median of {args.reps})"
    )
    for column in ("tool", "version", "cold s", "warm s", "cold × ours", "warm × ours", "recorded"):
        table.add_column(column, justify="left" if column in ("tool", "version", "recorded") else "right")
    for side in [ours, *peers]:
        table.add_row(
            side.label, side.version, f"{side.cold:.3f}", f"{side.warm:.3f}",
            f"{side.cold / ours.cold:.1f}×", f"{side.warm / ours.warm:.1f}×",
            f"{side.recorded['metrics']} metrics, {side.recorded['inputs']} in",
        )  # fmt: skip
    console.print(table)
    per_call = peers[0]
    ratio = per_call.warm / ours.warm
    console.print(
        f"Target: provenflow ≥ {TARGET:.0f}× faster than {per_call.label} (warm median): "
        f"{ratio:.1f}× → {verdict(ratio >= TARGET)}  (cold: {per_call.cold / ours.cold:.1f}×)"
    )
    record("tracking: mlflow log_metric ÷ ours, warm", ratio, "×", target=TARGET, better="higher")
    record("tracking: ours, warm run", ours.warm, "s", better="lower")
    record("tracking: mlflow log_batch ÷ ours, warm", peers[1].warm / ours.warm, "×", better="higher")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=5, help="warm repetitions after the cold run (default 5)")
    parser.add_argument("--metrics", type=int, default=1000, help="metric values per run (default 1000)")
    parser.add_argument("--inputs", type=int, default=10, help="input files per run (default 10)")
    parser.add_argument("--input-kib", type=int, default=64, help="size of each input file (default 64 KiB)")
    args = parser.parse_args()

    peers = peers_python()
    console.print(machine_summary())
    ours = measure("provenflow", OUR_PYTHON, "tracking_ours", args)
    mlflow = [
        measure("mlflow log_metric", peers, "tracking_mlflow", args),
        measure("mlflow log_batch", peers, "tracking_mlflow", args, "--batch"),
    ]
    report(ours, mlflow, args)


if __name__ == "__main__":
    main()
