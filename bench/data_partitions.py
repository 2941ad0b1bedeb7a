"""Benchmark: a partitioned folder that grows by one partition, versioned twice.

    .venv/bin/python bench/data_partitions.py [--partitions 20] [--rows 200000]

Writes a Hive folder (batch=1 … batch=N, one CSV of ROWS rows of data_scale's 20 mixed columns each)
under bench/.work/, versions it (the data-run's pass: ingest.many, without Prefect or validation),
adds one partition and versions it again. Reports the store's growth against the new partition's
size, and the second pass's time against pyarrow reading that one partition (best of 3). Targets
(issue 20): growth about the partition's bytes; the second pass ≤ 2× reading the partition.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow.csv as pa_csv
from common import console, scratch_dir, verdict
from data_scale import chunk

from provenflow.data.ingest import listing
from provenflow.data.ingest.many import ingest_many
from provenflow.data.ingest.stat_cache import StatCache
from provenflow.storage.store import ContentStore

try:
    from common import record
except ImportError:
    record = None


def tree_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def write_partition(root, day: int, rows: int) -> str:
    folder = root / f"batch={day}"
    folder.mkdir(parents=True)
    path = folder / "part-0.csv"
    pa_csv.write_csv(chunk(np.random.default_rng(day), day * rows, rows), path)
    return str(path)


def version(source: str, store: ContentStore, cache_path) -> tuple[float, object, float]:
    """Wall seconds, the version, and CPU seconds (every thread's: the parse, the Parquet writer
    and the summary run side by side, so on a loaded machine the CPU says more than the wall)."""
    started, cpu = time.perf_counter(), time.process_time()
    table = ingest_many(listing.list_source(source), store, StatCache(cache_path))
    return time.perf_counter() - started, table, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partitions", type=int, default=20)
    parser.add_argument("--rows", type=int, default=200_000, help="rows per partition")
    args = parser.parse_args()
    with scratch_dir("partitions") as work:
        root = work / "events"
        for day in range(1, args.partitions + 1):
            write_partition(root, day, args.rows)
        store = ContentStore(str(work / "store"))
        first_time, first, _ = version(str(root), store, work / "cache.json")
        before = tree_bytes(str(work / "store" / "objects"))
        new = write_partition(root, args.partitions + 1, args.rows)
        second_time, second, second_cpu = version(str(root), store, work / "cache.json")
        growth = tree_bytes(str(work / "store" / "objects")) - before
        reads = []
        for _ in range(3):
            started, cpu = time.perf_counter(), time.process_time()
            pa_csv.read_csv(new)
            reads.append((time.perf_counter() - started, time.process_time() - cpu))
        read, read_cpu = min(reads)
        size = os.path.getsize(new)
        folder = tree_bytes(str(root))
        ratio = second_time / read
        console.print(
            f"folder {folder / 2**20:,.0f} MiB in {args.partitions} partitions of {args.rows:,} rows; "
            f"new partition {size / 2**20:,.1f} MiB\n"
            f"first version {first_time:.2f} s ({first.rows:,} rows); second {second_time:.2f} s "
            f"(CPU {second_cpu:.2f} s; {second.rows:,} rows)\n"
            f"store growth {growth / 2**20:,.1f} MiB = {growth / size:.2f}× the new partition's CSV "
            f"({growth / folder:.1%} of the folder)\n"
            f"pyarrow read_csv of the new partition {read:.2f} s (CPU {read_cpu:.2f} s); second version ÷ that = {ratio:.2f}× "
            f"(target ≤ 2×: {verdict(ratio <= 2)})"
        )
        if record:
            record(f"data_partitions: second version ÷ reading the new partition ({args.partitions}×{args.rows:,})",
                   ratio, "×", target=2.0, peer="pyarrow read_csv of the new partition (best of 3)",
                   note=f"{second_time:.2f} s vs {read:.2f} s (CPU {second_cpu:.2f} s vs {read_cpu:.2f} s)")  # fmt: skip
            record(f"data_partitions: store growth ÷ new partition ({args.partitions}×{args.rows:,})",
                   growth / size, "×", peer="the new partition's CSV bytes",
                   note=f"{growth / 2**20:,.1f} MiB for a {size / 2**20:,.1f} MiB partition")  # fmt: skip


if __name__ == "__main__":
    main()
