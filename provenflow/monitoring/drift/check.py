"""``check_drift``: one window of production data against the reference profile stored at training.

The reference is the per-column profile ``provenflow.data.datasets.profile_of`` wrote with the dataset
version (histogram on quantile edges, quantiles, category frequencies, missing counts), so a check
reads the window once and never touches the training data. Numeric features are binned on the
stored edges in one ``searchsorted`` pass and their quantiles taken in one ``partition`` pass;
categorical features are counted once on their distinct values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from provenflow.errors import DataError, did_you_mean
from provenflow.monitoring.drift import stats
from provenflow.monitoring.drift.policy import P_VALUE_TESTS, DriftPolicy
from provenflow.monitoring.drift.reference import (
    CategoricalReference,
    ColumnReference,
    NumericReference,
    column_reference,
    discrete_reference,
)

Verdict = Literal["drift", "no drift", "not enough data"]
NEW_CATEGORIES_SHOWN = 10
EFFECT_SIZE_TESTS = frozenset({"psi", "wasserstein"})
_NORMAL_IQR_80 = 2.5631  # (q90 − q10) of a standard normal: turns that range into a σ estimate


def _json_float(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class ScoredTest:
    """One test on one feature. ``score`` is a p-value for ``ks``/``chi_square`` (drift when below the
    threshold) and a distance for the others (drift when at or above it)."""

    test: str
    score: float
    threshold: float
    drift: bool
    decides: bool
    statistic: float | None = None  # the KS D or chi-square statistic behind a p-value

    def to_dict(self) -> dict[str, Any]:
        data = {
            "score": _json_float(self.score),
            "threshold": self.threshold,
            "drift": self.drift,
            "decides": self.decides,
        }
        if self.statistic is not None:
            data["statistic"] = _json_float(self.statistic)
        return data


@dataclass(frozen=True)
class FeatureDrift:
    """The verdict on one feature (or the prediction). ``test``/``score``/``threshold`` are those of the
    deciding test that fired, or of the first deciding test when none fired; ``tests`` holds every
    test computed."""

    name: str
    kind: Literal["numeric", "categorical"]
    drift: bool
    test: str | None
    score: float | None
    threshold: float | None
    tests: dict[str, ScoredTest]
    rows: int  # current values present (not missing)
    missing: int
    new_categories: dict[str, int] = field(default_factory=dict)
    """Categorical only: current values outside the reference's stored categories, most frequent first.
    When the reference kept every category (``other`` = 0) these are unseen at training."""
    reason: str | None = None  # why tests were not computed, or why a firing test did not decide

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "test": self.test,
            "score": _json_float(self.score),
            "threshold": self.threshold,
            "drift": self.drift,
            "kind": self.kind,
            "rows": self.rows,
            "missing": self.missing,
            "tests": {name: t.to_dict() for name, t in self.tests.items()},
        }
        if self.new_categories:
            data["new_categories"] = dict(list(self.new_categories.items())[:NEW_CATEGORIES_SHOWN])
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one check: overall verdict, per-feature results, and what the window held."""

    verdict: Verdict
    rows: int
    features: dict[str, FeatureDrift]
    prediction: FeatureDrift | None
    policy: DriftPolicy
    reason: str | None = None  # set when the verdict is "not enough data"
    skipped_segments: tuple[str, ...] = ()
    """Prediction-log segments the reader could not read (from ``read_predictions``), reported as-is."""

    @property
    def drift(self) -> bool:
        return self.verdict == "drift"

    @property
    def drifted_features(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drift]

    @property
    def drifted_columns(self) -> list[str]:
        """The drifted features and, when it drifted, ``(prediction)``: what the CLI and the UI list."""
        return [
            *self.drifted_features,
            *(["(prediction)"] if self.prediction and self.prediction.drift else []),
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"verdict", "drift", "rows", "reason", "features": {NAME: {"test", "score",
        "threshold", "drift", ...}}, "prediction", "drifted_features", "skipped_segments", "policy"}``."""
        return {
            "verdict": self.verdict,
            "drift": self.drift,
            "rows": self.rows,
            "reason": self.reason,
            "features": {name: f.to_dict() for name, f in self.features.items()},
            "prediction": self.prediction.to_dict() if self.prediction else None,
            "drifted_features": self.drifted_features,
            "skipped_segments": list(self.skipped_segments),
            "policy": self.policy.to_dict(),
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per feature (and ``(prediction)``, named as the CLI names it), for the drift artifact."""
        checked = [(f.name, f) for f in self.features.values()]
        checked += [("(prediction)", self.prediction)] if self.prediction else []
        return [
            {
                "feature": name,
                "kind": f.kind,
                "test": f.test,
                "score": None if f.score is None else round(f.score, 6),
                "threshold": f.threshold,
                "drift": f.drift,
                **{name: round(t.score, 6) for name, t in f.tests.items()},
            }
            for name, f in checked
        ]


# -- one feature -------------------------------------------------------------------------------------


def wasserstein_scale(reference: NumericReference) -> float:
    """What a Wasserstein distance is divided by: the reference standard deviation.

    The standard deviation (as Evidently's ``wasserstein`` test uses) rather than the IQR, because it
    is stored exactly and a discrete feature (mostly one value) has an IQR of 0. Fallbacks, in order:
    ``(q90 − q10) / 2.5631`` (σ for a normal) when the std is unknown (infinite values), then 0.001
    for a constant reference, as Evidently does.
    """
    if reference.std is not None and reference.std > 0:
        return reference.std
    q = dict(zip(reference.probabilities.tolist(), reference.quantiles.tolist(), strict=True))
    spread = q.get(0.9, math.nan) - q.get(0.1, math.nan)
    if math.isfinite(spread) and spread > 0:
        return spread / _NORMAL_IQR_80
    return 1e-3


def _numeric_values(name: str, series: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        try:
            series = pd.to_numeric(series, errors="raise")
        except (TypeError, ValueError):
            bad = next((v for v in series.dropna() if pd.isna(pd.to_numeric(v, errors="coerce"))), None)
            raise DataError(
                f"feature {name!r} is numeric in the reference profile but the current data holds "
                f"{series.dtype} values such as {bad!r}; check the model's input signature and the prediction log"
            ) from None
    return series.to_numpy(dtype="float64", na_value=np.nan)


def _scored(
    test: str, score: float, policy: DriftPolicy, deciding: Sequence[str], statistic: float | None = None
):
    threshold = policy.threshold(test)
    drift = score < threshold if test in P_VALUE_TESTS else score >= threshold
    return ScoredTest(test, score, threshold, bool(drift), test in deciding, statistic)


def _missing_test(reference: ColumnReference, missing: int, rows: int, policy, deciding) -> ScoredTest:
    ref_share = reference.missing / reference.rows if reference.rows else 0.0
    return _scored("missing", abs(missing / rows - ref_share), policy, deciding)


def _numeric_tests(
    reference: NumericReference, values: np.ndarray, policy: DriftPolicy, deciding: Sequence[str]
) -> list[ScoredTest]:
    ref_bins = stats.reference_bin_counts(reference.counts)
    cur_bins = stats.bin_numeric(values, reference.edges)
    d, p_value = stats.ks_statistic_and_pvalue(ref_bins, cur_bins)
    # Missing values are judged by the "missing" test; the distribution is that of the values present.
    current_quantiles = np.quantile(values[np.isfinite(values)], reference.probabilities)
    distance = stats.wasserstein(
        reference.probabilities, reference.quantiles, current_quantiles, wasserstein_scale(reference)
    )
    return [
        _scored("psi", stats.psi(ref_bins, cur_bins), policy, deciding),
        _scored("ks", p_value, policy, deciding, statistic=d),
        _scored("wasserstein", distance, policy, deciding),
    ]


def _categorical_tests(
    reference: CategoricalReference, series: pd.Series, policy: DriftPolicy, deciding: Sequence[str]
) -> tuple[list[ScoredTest], dict[str, int]]:
    _, ref_counts, cur_counts, new = stats.align_categories(reference.frequencies, reference.other, series)
    statistic, p_value = stats.chi_square(ref_counts, cur_counts)
    tests = [
        _scored("psi", stats.psi(ref_counts, cur_counts), policy, deciding),
        _scored("chi_square", p_value, policy, deciding, statistic=statistic),
    ]
    return tests, new


def feature_reference(name: str, profile: Mapping[str, Any]) -> ColumnReference:
    """Value counts for a numeric column with few distinct values, else its bins and quantiles."""
    return discrete_reference(name, profile) or column_reference(name, profile)


def check_feature(reference: ColumnReference, series: pd.Series, policy: DriftPolicy) -> FeatureDrift:
    """Every test for one feature's current values against its reference, and the verdict."""
    name = reference.name
    rows = len(series)
    numeric = isinstance(reference, NumericReference)
    deciding = policy.numeric_tests if numeric else policy.categorical_tests
    values = _numeric_values(name, series) if numeric else None
    missing = int(np.isnan(values).sum()) if values is not None else int(series.isna().sum())
    present = rows - missing
    tests = [_missing_test(reference, missing, rows, policy, deciding)] if rows else []
    new_categories: dict[str, int] = {}
    reason = None
    reference_present = reference.counts.sum() if numeric else reference.count
    if not reference_present:
        reason = "the reference has no (finite) values for this feature"
    elif present < policy.min_rows:
        reason = (
            f"only {present} non-missing values; at least {policy.min_rows} are needed (DriftPolicy.min_rows)"
        )
    elif numeric:
        if np.isfinite(values).any():
            present_values = values if not missing else values[~np.isnan(values)]
            tests += _numeric_tests(reference, present_values, policy, deciding)
        else:
            reason = "the current values are all infinite"
    else:
        more, new_categories = _categorical_tests(reference, series, policy, deciding)
        tests += more
    by_name = {t.test: t for t in tests}
    decisive = [by_name[t] for t in deciding if t in by_name]
    fired = [t for t in decisive if t.drift]
    guard = by_name.get("ks" if numeric else "chi_square")
    if policy.require_significance and guard is not None and not guard.drift:
        unsupported = [t for t in fired if t.test in EFFECT_SIZE_TESTS]
        fired = [t for t in fired if t.test not in EFFECT_SIZE_TESTS]
        if unsupported and not fired:
            first = unsupported[0]
            reason = (
                f"{first.test} {first.score:.4g} ≥ {first.threshold:g}, but the difference is not significant "
                f"({guard.test} p = {guard.score:.3g} ≥ {guard.threshold:g}; DriftPolicy.require_significance)"
            )
    headline = (fired or decisive or [None])[0]
    return FeatureDrift(
        name=name,
        kind="numeric" if numeric else "categorical",
        drift=bool(fired),
        test=headline.test if headline else None,
        score=headline.score if headline else None,
        threshold=headline.threshold if headline else None,
        tests=by_name,
        rows=present,
        missing=missing,
        new_categories=new_categories,
        reason=reason,
    )


# -- the whole window --------------------------------------------------------------------------------


def _profile_columns(reference_profile: Mapping) -> Mapping[str, Any]:
    columns = reference_profile.get("columns") if isinstance(reference_profile, Mapping) else None
    if not isinstance(columns, Mapping):
        raise DataError(
            "the reference profile has no 'columns' object; pass the profile stored with the dataset version "
            "(provenflow.data.datasets.profile_of), not the dataset record"
        )
    return columns


def _current_column(name: str, current: pd.DataFrame) -> str | None:
    """The column holding ``name`` in current data: itself, or ``input.<name>`` in the prediction log
    (where a feature named like a log column, e.g. ``time``, is renamed)."""
    for candidate in (f"input.{name}", name):
        if candidate in current.columns:
            return candidate
    return None


def _select_features(
    columns: Mapping[str, Any], current: pd.DataFrame, features: Iterable[str] | None, prediction_column: str
) -> dict[str, str]:
    if features is None:
        chosen = {n: c for n in columns if n != prediction_column and (c := _current_column(n, current))}
        if not chosen:
            raise DataError(
                f"none of the profiled columns {sorted(columns)[:20]} is in the current data "
                f"(its columns: {list(current.columns)[:20]}); is this the right model's prediction log?"
            )
        return chosen
    chosen = {}
    for name in features:
        if name not in columns:
            raise DataError(
                f"feature {name!r} is not in the reference profile (it has {len(columns)} columns)."
                f"{did_you_mean(name, columns)}"
            )
        column = _current_column(name, current)
        if column is None:
            raise DataError(
                f"feature {name!r} is not in the current data (columns: {list(current.columns)[:20]})."
                f"{did_you_mean(name, [str(c) for c in current.columns])}"
            )
        chosen[name] = column
    return chosen


def check_drift(
    reference_profile: Mapping[str, Any],
    current: pd.DataFrame,
    policy: DriftPolicy | None = None,
    features: Iterable[str] | None = None,
    *,
    prediction_column: str = "prediction",
    prediction_profile: Mapping[str, Any] | None = None,
    skipped_segments: Iterable[str] = (),
) -> DriftResult:
    """Compare a window of current data with the reference profile stored at training time.

    ``reference_profile`` is the dataset version's stored profile (``{"rows", "columns": {...}}``);
    ``features`` the model's input names (default: every profiled column present in ``current``);
    ``prediction_profile`` the profile of the model's own predictions on its held-out rows
    (``predictions_profile``), against which ``current[prediction_column]`` is checked (categorical
    for classifiers, numeric for regressors); without it the prediction is not checked. Not the
    target's profile: a regressor's predictions are narrower than its target (they shrink to the
    mean), so same-distribution traffic read as prediction drift on every check. A window with fewer than
    ``policy.min_rows`` rows gives the verdict "not enough data" (``drift`` False) with the reason.
    """
    policy = policy or DriftPolicy()
    skipped = tuple(skipped_segments)
    rows = len(current)
    if rows < policy.min_rows:
        reason = (
            "the window is empty"
            if rows == 0
            else f"the window has {rows} rows; at least {policy.min_rows} are needed (DriftPolicy.min_rows)"
        )
        if skipped:
            reason += f"; {len(skipped)} prediction-log segment(s) could not be read"
        return DriftResult("not enough data", rows, {}, None, policy, reason, skipped)
    columns = _profile_columns(reference_profile)
    chosen = _select_features(columns, current, features, prediction_column)
    results = {
        name: check_feature(feature_reference(name, columns[name]), current[column], policy)
        for name, column in chosen.items()
    }
    prediction = None
    if prediction_profile is not None:
        if prediction_column not in current.columns:
            raise DataError(
                f"the current data has no prediction column {prediction_column!r} to compare with the target "
                f"profile (columns: {list(current.columns)[:20]})"
            )
        target = feature_reference(prediction_column, prediction_profile)
        prediction = check_feature(target, current[prediction_column], policy)
    drifted = sum(f.drift for f in results.values())
    needed = max(1, math.ceil(policy.drift_share * len(results)))
    drift = drifted >= needed or bool(policy.prediction_decides and prediction and prediction.drift)
    return DriftResult("drift" if drift else "no drift", rows, results, prediction, policy, None, skipped)
