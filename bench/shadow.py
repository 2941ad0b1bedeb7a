"""What a shadow challenger costs the production server: one-row /predict with wrk, production alone,
mirroring to a healthy challenger, and mirroring to a hung one (SIGSTOP), interleaved rounds.

    .venv/bin/python bench/shadow.py [--seconds 5] [--rounds 2] [--connections 4]

Production and challenger serve the same 100-tree forest (``serving.make_bundle``) on loopback and
share the machine's cores with wrk: the mirroring's CPU (one more HTTP request per request, sent
from production's event loop) shows as lower throughput; a design that waited for the challenger
would show the hung case's latency in seconds.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, console, machine_summary, record, scratch_dir
from rich.table import Table
from serving import free_port, make_bundle
from serving_tail import wrk


def start(bundle: Path, store: Path, shadow_url: str | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "PROVENFLOW_PREDICTION_LOG_URL": str(store), "PYTHONPATH": str(ROOT)}
    if shadow_url:
        env["PROVENFLOW_SHADOW_URL"] = shadow_url
    process = subprocess.Popen(
        [sys.executable, "-m", "provenflow.serving", "--bundle", str(bundle), "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("a server did not become ready")


def shadow_counts(port: int) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    out = {}
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith("provenflow_shadow_requests_total{"):
            out[line.split('"')[1]] = float(line.rsplit(" ", 1)[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"alone": [], "shadow": [], "hung shadow": []}
    with scratch_dir("shadow") as tmp:
        bundle, rows = make_bundle(tmp)
        body = json.dumps({"records": rows[:1]}).encode()
        challenger, challenger_port = start(bundle, tmp / "challenger")
        alone, alone_port = start(bundle, tmp / "alone")
        mirrored, mirrored_port = start(bundle, tmp / "production", f"http://127.0.0.1:{challenger_port}")
        try:
            for _ in range(args.rounds):
                results["alone"].append(wrk(alone_port, body, args.seconds, args.connections))
                results["shadow"].append(wrk(mirrored_port, body, args.seconds, args.connections))
                os.kill(challenger.pid, signal.SIGSTOP)
                results["hung shadow"].append(wrk(mirrored_port, body, args.seconds, args.connections))
                os.kill(challenger.pid, signal.SIGCONT)
                time.sleep(6)  # the hung copies time out (5 s) before the next round
            counts = shadow_counts(mirrored_port)
        finally:
            os.kill(challenger.pid, signal.SIGCONT)
            for process in (challenger, alone, mirrored):
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
    console.print(machine_summary())
    table = Table(
        title=f"one-row /predict, wrk -t1 -c{args.connections} -d{args.seconds:g}s, {args.rounds} rounds"
    )
    for column in ("production", "requests/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column)
    for name, runs in results.items():
        for run in runs:
            table.add_row(name, f"{run['requests_per_s']:.0f}", f"{run['p50_ms']:.2f}", f"{run['p99_ms']:.2f}",
                          str(run["errors"]))  # fmt: skip
    console.print(table)
    console.print(f"copies for the challenger: {counts}")
    best = {name: max(r["requests_per_s"] for r in runs) for name, runs in results.items()}
    record("shadow: throughput with a shadow ÷ alone", best["shadow"] / best["alone"], "×", better="higher")
    worst_p50 = max(r["p50_ms"] for r in results["hung shadow"])
    record("shadow: p50 with a hung shadow", worst_p50, "ms", target=50.0, better="lower")


if __name__ == "__main__":
    main()
