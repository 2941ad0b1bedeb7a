"""Benchmark: a data-run of generated CSVs (20 mixed columns) against a plain pyarrow CSV → Parquet.

    .venv/bin/python bench/data_scale.py [--sizes 1M,4M,40M]

For each size a CSV is generated once under bench/.work/ (~100 bytes a row: 40M rows ≈ 4 GB) and
read once before measuring. Each side runs in its own process; its time is measured inside it
(after imports), its peak RSS by the kernel (wait4's ru_maxrss). Targets: the data-run's peak RSS
≤ 1 GiB whatever the size, its time ≤ 1.5× the plain conversion. The plain conversion reads the
whole table into memory (as a user's script would): its RSS is shown for comparison only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
from common import OUR_PYTHON, WORK, WORKERS, console, machine_summary, scratch_dir, verdict
from rich.table import Table

try:
    from common import record
except ImportError:  # a bench/common.py older than the summary (bench/.work/summary.json)
    record = None

RSS_TARGET = 1024**3
TIME_TARGET = 1.5
CHUNK_ROWS = 500_000


def rows_of(size: str) -> int:
    size = size.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(size[-1], 1)
    return int(float(size.rstrip("KM")) * scale)


def chunk(rng: np.random.Generator, start: int, n: int) -> pa.Table:
    """20 columns: 6 floats, 4 integers, 4 low-cardinality strings, 2 booleans, a date, an
    identifier, and an integer and a float column with gaps."""
    cols = {}
    for i in range(6):
        cols[f"f{i}"] = rng.normal(100 * i, 1 + i, n).round(3)
    for i in range(4):
        cols[f"i{i}"] = rng.integers(0, 10 ** (i + 1), n)
    for i, names in enumerate((["a", "b", "c"], ["north", "south", "east", "west"], list("abcdefghij"),
                               [f"city{j}" for j in range(200)])):
        cols[f"s{i}"] = np.asarray(names)[rng.integers(0, len(names), n)]
    cols["b0"] = rng.random(n) < 0.5
    cols["b1"] = rng.random(n) < 0.1
    days = np.datetime64("2015-01-01") + rng.integers(0, 3000, n).astype("timedelta64[D]")
    cols["day"] = np.datetime_as_string(days)
    cols["id"] = np.char.add("row-", np.arange(start, start + n).astype(str))
    gaps = rng.random(n) < 0.05
    cols["gi"] = pa.array(rng.integers(0, 1000, n), mask=gaps)
    cols["gf"] = pa.array(rng.normal(size=n).round(4), mask=rng.random(n) < 0.05)
    return pa.table(cols)


def data_file(rows: int) -> str:
    path = WORK / f"scale-{rows}.csv"
    if path.exists():
        return str(path)
    need = rows * 110
    free = shutil.disk_usage(WORK).free
    if need * 3 > free:  # the CSV, the store's raw copy and the Parquet files
        sys.exit(f"not enough disk for {rows:,} rows: ~{need * 3 / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free")
    console.print(f"generating {path} ({rows:,} rows) ...")
    WORK.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    rng = np.random.default_rng(rows)
    with pa.OSFile(str(partial), "wb") as out:
        for n, start in enumerate(range(0, rows, CHUNK_ROWS)):
            table = chunk(rng, start, min(CHUNK_ROWS, rows - start))
            pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=n == 0, quoting_style="none"))
    partial.rename(path)
    return str(path)


def measure(worker: str, *args: str) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "GX_ANALYTICS_ENABLED": "false"}
    with open(WORK / f"{worker}.out", "w+") as out, open(WORK / f"{worker}.err", "w+") as err:
        proc = subprocess.Popen([str(OUR_PYTHON), str(WORKERS / f"{worker}.py"), *args],
                                stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{worker} failed (exit {proc.returncode}):\n{err.read()[-3000:]}")
        result = json.loads(out.read().strip().splitlines()[-1])
    result["rss"] = usage.ru_maxrss * 1024
    return result


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 2**62


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1M,4M,40M", help="rows per generated CSV (default 1M,4M,40M)")
    args = parser.parse_args()
    console.print(machine_summary())
    table = Table(title="data-run vs plain pyarrow CSV → Parquet (20 mixed columns)")
    for column in ("rows", "CSV GB", "plain s", "plain RSS", "data-run s", "(source, pass, GX)",
                   "data-run RSS", "time ratio", "time ≤ 1.5×", "RSS ≤ 1 GiB"):
        table.add_column(column, justify="right")
    figures = []
    for size in args.sizes.split(","):
        rows = rows_of(size)
        path = data_file(rows)
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        with scratch_dir("scale") as folder:
            # read_csv holds ~3.5x the CSV in memory: above half the memory available, the plain side streams.
            stream = os.path.getsize(path) * 3.5 > available_memory() / 2
            plain = measure("data_scale_plain", "--file", path, "--out", str(folder / "plain.parquet"),
                            *(["--stream"] if stream else []))  # fmt: skip
            ours = measure("data_scale_ours", "--file", path, "--store", str(folder / "store"))
        ratio = ours["seconds"] / plain["seconds"]
        figures.append({"rows": rows, "plain": plain, "ours": ours, "ratio": ratio})
        if record is not None:
            record(f"data_scale: data-run time ÷ plain conversion ({rows:,} rows)", ratio, "×", target=TIME_TARGET)
            record(f"data_scale: data-run peak RSS ({rows:,} rows)", ours["rss"] / 2**20, "MiB",
                   target=RSS_TARGET / 2**20)  # fmt: skip
        table.add_row(
            f"{rows:,}", f"{os.path.getsize(path) / 1e9:.2f}", f"{plain['seconds']:.1f}" + (" (streamed)" if stream else ""),
            f"{plain['rss'] / 2**20:,.0f} MiB", f"{ours['seconds']:.1f}",
            f"{ours['store_source_s']:.1f}, {ours['pass_s']:.1f}, {ours['validate_s']:.1f}",
            f"{ours['rss'] / 2**20:,.0f} MiB", f"{ratio:.2f}×",
            verdict(ratio <= TIME_TARGET), verdict(ours["rss"] <= RSS_TARGET),
        )  # fmt: skip
    console.print(table)
    console.print("Great Expectations validated: " + "; ".join(f["ours"]["validated_on"] for f in figures))
    (WORK / "data_scale.json").write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
