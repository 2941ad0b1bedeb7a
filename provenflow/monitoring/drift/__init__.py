"""Drift statistics: is production data still like the training data?

The public surface, for the drift-monitor flow and anything else::

    check_drift(reference_profile, current, policy, features, prediction_column=..., prediction_profile=...)
        -> DriftResult            # per-feature tests, prediction drift, overall verdict, "not enough data"
    DriftPolicy(...)              # thresholds, deciding tests, significance, window, min sample size
    psi, bin_numeric, ks_statistic_and_pvalue, wasserstein, chi_square, align_categories
                                  # the pure statistics, on counts and quantiles

Everything works from the per-column profile stored with a dataset version at training time
(``provenflow.data.datasets.profile_of``), never from the raw training rows. Importing this package costs
numpy, pandas and ``scipy.special`` only (no ``scipy.stats``, Evidently or Prefect); the Evidently
HTML report lives in ``provenflow.monitoring.drift_report``.
"""

from provenflow.monitoring.drift.check import (
    DriftResult,
    FeatureDrift,
    ScoredTest,
    check_drift,
    check_feature,
    wasserstein_scale,
)
from provenflow.monitoring.drift.policy import CATEGORICAL_TESTS, NUMERIC_TESTS, P_VALUE_TESTS, DriftPolicy
from provenflow.monitoring.drift.reference import CategoricalReference, NumericReference, column_reference
from provenflow.monitoring.drift.stats import (
    OTHER,
    align_categories,
    bin_numeric,
    chi_square,
    ks_pvalue,
    ks_statistic_and_pvalue,
    psi,
    reference_bin_counts,
    wasserstein,
)

__all__ = [
    "CATEGORICAL_TESTS",
    "NUMERIC_TESTS",
    "OTHER",
    "P_VALUE_TESTS",
    "CategoricalReference",
    "DriftPolicy",
    "DriftResult",
    "FeatureDrift",
    "NumericReference",
    "ScoredTest",
    "align_categories",
    "bin_numeric",
    "check_drift",
    "check_feature",
    "chi_square",
    "column_reference",
    "ks_pvalue",
    "ks_statistic_and_pvalue",
    "psi",
    "reference_bin_counts",
    "wasserstein",
    "wasserstein_scale",
]
