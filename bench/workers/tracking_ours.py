"""provenflow side of bench/tracking.py: one run with N metrics and M input files, timed in-process.

Run from a fresh scratch folder (the current directory); prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from importlib import metadata
from pathlib import Path

import provenflow as pf
from provenflow.ledger import models as m
from provenflow.workspace import Workspace


def make_inputs(folder: Path, count: int, kib: int) -> list[Path]:
    """Fresh random files, so every repetition really hashes and stores its inputs."""
    folder.mkdir()
    paths = [folder / f"input-{i}.bin" for i in range(count)]
    for path in paths:
        path.write_bytes(os.urandom(kib * 1024))
    return paths


def one_run(tmp: Path, inputs: list[Path], metrics: int) -> tuple[float, str]:
    """Seconds from opening the workspace (cached after the first time) to the run's commit."""
    started = time.perf_counter()
    ws = Workspace.open(f"sqlite:///{tmp}/ledger.db", f"{tmp}/store")
    with pf.start("bench", parameters={"lr": 0.1}, workspace=ws) as run:
        for path in inputs:
            pf.input(path)
        for i in range(metrics):
            pf.metric("loss", 1.0 / (i + 1), step=i)
    return time.perf_counter() - started, run.id


def recorded(tmp: Path, run_id: str) -> dict:
    ws = Workspace.open(f"sqlite:///{tmp}/ledger.db", f"{tmp}/store")
    with ws.ledger.reader() as session:
        run = session.get(m.Run, run_id)
        return {"metrics": len(run.metrics), "inputs": len(run.io)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, required=True)
    parser.add_argument("--metrics", type=int, required=True)
    parser.add_argument("--inputs", type=int, required=True)
    parser.add_argument("--input-kib", type=int, required=True)
    args = parser.parse_args()

    tmp = Path.cwd()
    times = []
    for rep in range(args.reps + 1):  # the first is the cold run: it creates the ledger
        inputs = make_inputs(tmp / f"inputs-{rep}", args.inputs, args.input_kib)
        seconds, run_id = one_run(tmp, inputs, args.metrics)
        times.append(seconds)
    print(
        json.dumps(
            {
                "tool": "provenflow",
                "version": metadata.version("provenflow"),
                "cold_s": times[0],
                "warm_s": times[1:],
                "last_run": recorded(tmp, run_id),
            }
        )
    )


if __name__ == "__main__":
    main()
