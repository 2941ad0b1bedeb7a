"""Every benchmark in turn, then one summary: what ``make bench`` runs.

    .venv/bin/python bench/all.py            # short mode, an estimated 5-8 min on 2 quiet cores (first run longer: peers' venvs, data files)
    .venv/bin/python bench/all.py --full     # every script at its default size (~15 min)
    .venv/bin/python bench/all.py serving_tail drift   # only these

``bench/.work/summary.json`` is started afresh (the run before kept as summary.previous.json, so each
figure is checked against a second run: more than 20% apart is marked "not reproduced"); each script adds its figures with
``common.record(name, value, unit, target=..., better=...)``, and a script that fails is
recorded as such, the others still run. The summary is printed at the end and, after a run of
every script, written as bench/README.md's figures table (never typed by hand); keep a copy per
commit (its ``commit`` field says which) to compare. Exit status 1 when a script failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from common import BENCH, PREVIOUS, ROOT, SUMMARY, console, record, summary_table, write_readme_figures

# script -> arguments of the short mode (sizes keep each target's meaning; see bench/README.md)
SHORT = {
    "tracking": ["--reps", "3"],
    "datasets": ["--size-mb", "256", "--reps", "3"],
    "drift": ["--no-per-test", "--reps", "1"],
    "serving": ["--seconds", "3"],
    "sweep": ["--small", "--no-dask"],
    "serving_tail": ["--seconds", "20", "--throughput-seconds", "5"],
    "predictlog_crash": ["--seconds", "3"],
    "overhead": ["--reps", "2"],
    "worker_start": ["--reps", "2"],
    "data_scale": ["--sizes", "1M"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help=f"run only these of {', '.join(SHORT)} (default: all)")
    parser.add_argument("--full", action="store_true", help="every script at its default size")
    args = parser.parse_args()
    if unknown := set(args.only) - set(SHORT):
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))}; choose from {', '.join(SHORT)}")
    if not args.only and SUMMARY.exists():
        SUMMARY.replace(PREVIOUS)  # the run before, against which each figure's reproduction is checked
    failed = []
    for script, short in SHORT.items():
        if args.only and script not in args.only:
            continue
        command = [sys.executable, str(BENCH / f"{script}.py"), *([] if args.full else short)]
        console.rule(f"{script}.py {' '.join(command[2:])}")
        start = time.monotonic()
        ok = subprocess.run(command, cwd=ROOT, check=False).returncode == 0
        record(f"bench {script}.py finished", float(ok), "", target=1.0, better="higher",
               note=f"{time.monotonic() - start:.0f} s")  # fmt: skip
        if not ok:
            failed.append(script)
    summary_table()
    if not args.only and write_readme_figures():  # a partial run would leave a partial table
        console.print("bench/README.md: figures table regenerated from bench/.work/summary.json")
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
