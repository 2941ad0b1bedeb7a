"""Plain side of bench/data_scale.py: pyarrow.csv.read_csv then pyarrow.parquet.write_table, timed;
with --stream, pyarrow.csv.open_csv's batches into a ParquetWriter (for a table larger than memory)."""

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
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.stream:
        reader = pa_csv.open_csv(args.file)
        with pq.ParquetWriter(args.out, reader.schema, compression="zstd") as writer:
            for batch in reader:
                writer.write_batch(batch)
    else:
        pq.write_table(pa_csv.read_csv(args.file), args.out, compression="zstd")
    print(json.dumps({"seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
