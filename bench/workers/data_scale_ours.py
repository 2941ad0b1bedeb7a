"""provenflow side of bench/data_scale.py: the work of a data-run, timed in-process after imports.

Stores the raw source, makes the one streamed pass (canonical Parquet into the store, schema,
profile, sample), generates the default suite and validates the sample with Great Expectations,
exactly as flows/data_run.py's tasks do, without the Prefect flow engine and the ledger (fixed
costs that bench/tracking.py measures). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

import great_expectations  # noqa: F401  (imported before timing: a fixed cost, not the data's)

from provenflow.data import datasets, ingest, validation
from provenflow.storage.store import ContentStore


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--file", required=True)
    parser.add_argument("--store", required=True)
    args = parser.parse_args()
    store = ContentStore(args.store, fsync=False)
    started = time.perf_counter()
    datasets.store_source(store, args.file)
    stored_source = time.perf_counter()
    table = ingest.ingest(args.file, ingest.workdir_for(store))
    ingest.store_ingested(store, table)
    passed = time.perf_counter()
    suite = validation.generated_suite("bench", table.sample, "bench.json")
    report = validation.validate_dataset(table.sample, suite, table.validated_on)
    done = time.perf_counter()
    print(json.dumps({
        "seconds": done - started,
        "store_source_s": stored_source - started,
        "pass_s": passed - stored_source,
        "validate_s": done - passed,
        "rows": table.rows,
        "validated_on": report.on,
        "hash": table.digest.hex,
    }))


if __name__ == "__main__":
    main()
