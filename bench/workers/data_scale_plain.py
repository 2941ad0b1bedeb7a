"""Plain side of bench/data_scale.py: pyarrow.csv.read_csv then pyarrow.parquet.write_table, timed."""

from __future__ import annotations

import argparse
import json
import time

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    pq.write_table(pa_csv.read_csv(args.file), args.out, compression="zstd")
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
