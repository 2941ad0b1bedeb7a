"""Worker: Evidently's DataDriftPreset on the benchmark data; prints one JSON line.

    python drift_evidently.py REF.parquet CUR.parquet [--per-test]

Times ``Report([DataDriftPreset(...)]).run(current, reference)`` with the methods and thresholds
matched to provenflow's (``wasserstein`` 0.1 for numeric, ``psi`` 0.1 for categorical), and reads
each column's score from the snapshot. Peak RSS is read right after ``run()``, before anything
else, so the per-test pass that follows (``--per-test``: Evidently's own psi/ks/wasserstein/
chisquare functions on every column, untimed) does not count.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import pandas as pd


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--per-test", action="store_true")
    args = parser.parse_args()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    import evidently
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numeric = [c for c in reference.columns if pd.api.types.is_numeric_dtype(reference[c])]
    categorical = [c for c in reference.columns if c not in numeric]
    loaded = peak_mib()

    start = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    report = Report(
        [DataDriftPreset(num_method="wasserstein", num_threshold=0.1, cat_method="psi", cat_threshold=0.1)]
    )
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    run_s = time.perf_counter() - start
    peak = peak_mib()

    preset = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            preset[config["column"]] = {
                "test": config["method"],
                "score": float(metric["value"]),
                "threshold": config["threshold"],
                "drift": float(metric["value"]) >= config["threshold"],
            }

    per_test: dict[str, dict] = {}
    if args.per_test:
        from evidently.legacy.calculations.stattests import (
            chi_stat_test,
            ks_stat_test,
            psi_stat_test,
            wasserstein_stat_test,
        )
        from evidently.legacy.core import ColumnType

        tests = {
            ColumnType.Numerical: {"psi": (psi_stat_test, 0.1), "ks": (ks_stat_test, 0.05),
                                   "wasserstein": (wasserstein_stat_test, 0.1)},
            ColumnType.Categorical: {"psi": (psi_stat_test, 0.1), "chi_square": (chi_stat_test, 0.05)},
        }  # fmt: skip
        for column in reference.columns:
            kind = ColumnType.Numerical if column in numeric else ColumnType.Categorical
            ref, cur = reference[column].dropna(), current[column].dropna()
            if kind == ColumnType.Categorical:
                ref, cur = ref.astype(object), cur.astype(object)
            per_test[column] = {}
            for name, (test, threshold) in tests[kind].items():
                outcome = test(ref, cur, kind, threshold)
                per_test[column][name] = {"score": float(outcome.drift_score), "drift": bool(outcome.drifted)}

    print(
        json.dumps(
            {
                "version": evidently.__version__,
                "run_s": run_s,
                "peak_mib_loaded": loaded,
                "peak_mib": peak,
                "preset": preset,
                "per_test": per_test,
            }
        )
    )


if __name__ == "__main__":
    main()
