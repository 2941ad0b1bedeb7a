"""Worker: provenflow's drift check on the benchmark data; prints one JSON line.

    python drift_ours.py REF.parquet CUR.parquet --reps 3

Times ``profile_of(reference)`` (the one-off at training time) and ``check_drift`` on the current
data against that stored profile, with the policy matched to the Evidently side (Wasserstein for
numeric, PSI for categorical, thresholds 0.1) and with the default policy. Peak RSS is this
process's high-water mark (``ru_maxrss``), read after loading the data and after the checks.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from statistics import median

import pandas as pd

from provenflow.data.datasets import profile_of
from provenflow.monitoring.drift import DriftPolicy, check_drift

MATCHED = DriftPolicy(
    numeric_tests=("wasserstein",), categorical_tests=("psi",), require_significance=False, min_rows=1
)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("reference")
    parser.add_argument("current")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    reference = pd.read_parquet(args.reference)
    current = pd.read_parquet(args.current)
    loaded = peak_mib()

    start = time.perf_counter()
    profile = json.loads(json.dumps(profile_of(reference)))  # as stored: JSON in the ledger
    profile_s = time.perf_counter() - start

    check_s = []
    for _ in range(args.reps):
        start = time.perf_counter()
        result = check_drift(profile, current, MATCHED)
        check_s.append(time.perf_counter() - start)
    after_check = peak_mib()
    start = time.perf_counter()
    default = check_drift(profile, current)
    default_s = time.perf_counter() - start

    print(
        json.dumps(
            {
                "profile_s": profile_s,
                "check_s": check_s,
                "check_median_s": median(check_s),
                "default_policy_s": default_s,
                "rows": result.rows,
                "peak_mib_loaded": loaded,
                "peak_mib": after_check,
                "features": {name: f.to_dict() for name, f in result.features.items()},
                "default_drifted": default.drifted_features,
            }
        )
    )


if __name__ == "__main__":
    main()
