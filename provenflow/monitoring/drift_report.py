"""The Evidently HTML drift report, computed on a bounded sample so it never dominates a check's time.

Evidently's ``DataDriftPreset`` takes ~33 s on 1M rows here (it computes each column's drift
several times and draws its charts inside ``run()``) and ~2.8 s just to import, so it is imported
inside ``evidently_report`` only, and both sides are cut to ``max_rows`` rows first.

The report shows provenflow's verdict, not a second opinion: every column (and the prediction) is
given an Evidently ``StatTest`` named for provenflow's deciding test whose score and drift flag are
those ``check_drift`` computed on the whole window against the stored profile. Evidently's own
defaults (Wasserstein, Jensen–Shannon, chi-square on the sample) disagreed with the verdict on 2 of
7 columns of the demo's calm traffic and 3 of 7 of its drifted traffic, and a reader trusted neither;
now Evidently draws the charts and the verdicts agree column by column.

Only the reference *profile* is stored with a dataset version, not its rows. Without a real
reference sample the report draws a synthetic one from the profile (``sample_from_profile``), and
says so at the top of the page.
"""

from __future__ import annotations

import html
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from provenflow.errors import ConfigError, DataError, did_you_mean
from provenflow.monitoring.drift.check import DriftResult, FeatureDrift, check_drift
from provenflow.monitoring.drift.policy import DriftPolicy
from provenflow.monitoring.drift.reference import CategoricalReference, NumericReference, column_reference
from provenflow.monitoring.drift.stats import OTHER

DEFAULT_MAX_ROWS = 10_000
# Evidently keeps registered stattests in a module-level dict: one report is built at a time.
_REGISTRY_LOCK = threading.Lock()


def sample_from_profile(
    reference_profile: Mapping[str, Any], rows: int, features: Iterable[str], seed: int = 0
) -> pd.DataFrame:
    """A synthetic reference sample drawn from the stored profile.

    Numeric: inverse-CDF sampling, ``u ~ U(0, 1)`` mapped through the quantile function taken as
    piecewise linear between the stored quantiles (uniform within each quantile interval; the
    tails run linearly to the stored min and max). Categorical: the stored top categories in
    their stored proportions, the rest as one ``"(other)"`` value. Missing values in the stored
    proportion. It matches the profile's marginals only: correlations between features are lost.
    """
    columns = reference_profile.get("columns", {})
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for name in features:
        if name not in columns:
            raise DataError(f"feature {name!r} is not in the reference profile.{did_you_mean(name, columns)}")
        ref = column_reference(name, columns[name])
        present = rng.random(rows) >= (ref.missing / ref.rows if ref.rows else 0.0)
        if isinstance(ref, NumericReference):
            keep = np.isfinite(ref.quantiles)
            values = np.interp(rng.random(rows), ref.probabilities[keep], ref.quantiles[keep])
            data[name] = np.where(present, values, np.nan)
        else:
            data[name] = _categorical_sample(ref, rows, rng, present)
    return pd.DataFrame(data)


def _categorical_sample(
    ref: CategoricalReference, rows: int, rng: np.random.Generator, present: np.ndarray
) -> pd.Series:
    labels = [*ref.frequencies, OTHER]
    weights = np.array([*ref.frequencies.values(), ref.other], dtype="float64")
    if weights.sum() == 0:
        return pd.Series([None] * rows, dtype="object")
    drawn = rng.choice(np.array(labels, dtype=object), size=rows, p=weights / weights.sum())
    return pd.Series(np.where(present, drawn, None), dtype="object")


def _bounded(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows, drawn at random across the whole frame (not its head: a prediction
    log window is in time order)."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=max_rows, random_state=seed).reset_index(drop=True)


def _with_title(page: str, title: str, description: str) -> str:
    """Evidently's page has no title of ours: put it in the <title> and as a plain heading line with
    what was compared (no "which to trust" banner: the verdicts are provenflow's own)."""
    head = f"<title>{html.escape(title)}</title>"
    page = page.replace("<head>", "<head>" + head, 1) if "<head>" in page else head + page
    heading = (
        '<div style="font-family:sans-serif;padding:8px 16px"><b>'
        f"{html.escape(title)}</b> · {html.escape(description)}</div>"
    )
    marker = page.find("<body")
    if marker == -1:
        return heading + page
    close = page.find(">", marker) + 1
    return page[:close] + heading + page[close:]


def _write_atomically(path: Path, text: str) -> None:
    """The report appears whole or not at all (a temporary file in the same folder, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _import_evidently() -> tuple[Any, Any, Any, Any]:
    try:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    except (ImportError, AttributeError) as exc:  # also pandas ≥ 3.1, which evidently 0.7 cannot import under
        raise ConfigError(
            f"the drift HTML report needs Evidently 0.7, which could not be imported ({exc}); install "
            "'evidently>=0.7,<0.8' with pandas below 3.1, or run the drift check without the report"
        ) from None
    return DataDefinition, Dataset, Report, DataDriftPreset


def _provenflow_stattests(checked: Mapping[str, FeatureDrift], rows: int) -> tuple[dict, dict]:
    """One registered Evidently ``StatTest`` per column that answers with provenflow's score and flag."""
    from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
    from evidently.legacy.core import ColumnType

    methods: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    for column, result in checked.items():
        if result.test is None or result.score is None or not math.isfinite(result.score):
            test, score, threshold = "none", 0.0, 0.0
            shown = f"not tested by provenflow: {result.reason or 'no test applies'}"
        else:
            test, score, threshold = result.test, float(result.score), float(result.threshold or 0.0)
            side = "below" if test in ("ks", "chi_square") else "at or above"
            shown = (
                f"provenflow {test} on all {rows:,} rows against the training profile "
                f"(drift {side} {threshold:g})"
            )
            if result.reason and not result.drift:
                shown += f"; {result.reason}"
        stat = StatTest(
            name=f"provenflow {test} ({column})",
            display_name=shown,
            allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
            default_threshold=threshold,
        )

        def answer(_ref: Any, _cur: Any, _kind: Any, _threshold: float, s=score, d=result.drift):
            return s, bool(d)

        register_stattest(stat, default_impl=answer)
        methods[column] = stat
        thresholds[column] = threshold
    return methods, thresholds


def evidently_snapshot(
    reference_sample: pd.DataFrame | None,
    reference_profile: Mapping[str, Any],
    current: pd.DataFrame,
    max_rows: int = DEFAULT_MAX_ROWS,
    features: Iterable[str] | None = None,
    seed: int = 0,
    *,
    verdict: DriftResult | None = None,
    policy: DriftPolicy | None = None,
    prediction_profile: Mapping[str, Any] | None = None,
    prediction_column: str = "prediction",
) -> tuple[Any, str]:
    """The Evidently snapshot behind ``evidently_report`` and the line saying what it compared.

    ``verdict`` is the check's result on the whole window; without it, ``check_drift`` runs here on
    ``current`` with ``policy`` (and ``prediction_profile`` for the prediction column), as the monitor does.
    """
    if max_rows < 2:
        raise ValueError(f"max_rows must be at least 2, got {max_rows}")
    columns = reference_profile.get("columns")
    if not isinstance(columns, Mapping):
        raise DataError(
            "the reference profile has no 'columns' object; pass the dataset version's stored profile"
        )
    chosen = (
        list(features)
        if features is not None
        else [c for c in columns if c in current.columns and c != prediction_column]
    )
    for name in chosen:
        if name not in columns or name not in current.columns:
            where = "reference profile" if name not in columns else "current data"
            raise DataError(f"feature {name!r} is not in the {where}; the report cannot compare it")
    if not chosen and features is None:  # (a model whose only input is a date: its prediction, alone)
        raise DataError("no profiled feature is in the current data: nothing to report")
    if current.empty:
        raise DataError("the current data has no rows: nothing to report")
    if verdict is None:
        verdict = check_drift(reference_profile, current, policy, chosen, prediction_profile=prediction_profile,
                              prediction_column=prediction_column)  # fmt: skip
    checked = {name: verdict.features[name] for name in chosen if name in verdict.features}
    if verdict.prediction is not None and prediction_profile is not None and prediction_column in current.columns:
        checked[prediction_column] = verdict.prediction
        columns = {**columns, prediction_column: prediction_profile}
    shown = list(checked)
    if not shown:
        raise DataError(f"the drift check has no verdict on {chosen}: nothing to report ({verdict.reason})")

    cur = _bounded(current[shown], max_rows, seed)
    if reference_sample is not None:
        missing = [c for c in shown if c not in reference_sample.columns]
        if missing:
            raise DataError(f"the reference sample lacks feature(s) {missing}")
        ref = _bounded(reference_sample[shown], max_rows, seed)
        description = f"Reference: {len(ref):,} rows sampled from the training data"
    else:
        ref = sample_from_profile({"columns": columns}, min(max_rows, max(len(cur), 2)), shown, seed)
        description = (
            f"Reference: {len(ref):,} synthetic rows drawn from the stored training profile (numeric: inverse-CDF "
            "sampling between stored quantiles; categorical: stored category frequencies, the rest as '(other)'); "
            "per-column shapes only, no correlations"
        )
    description += (
        f". Current: {len(cur):,} of {len(current):,} rows, chosen at random, for the charts. Each column's "
        f"test, score and verdict are provenflow's, computed on all {verdict.rows:,} rows: {verdict.verdict}."
    )
    numeric = [c for c in shown if columns[c].get("kind") == "numeric"]
    categorical = [c for c in shown if c not in numeric]
    for frame in (cur, ref):
        for c in categorical:
            frame[c] = (
                frame[c]
                .astype("object")
                .where(frame[c].notna(), None)
                .map(lambda v: v if v is None else str(v))
            )

    DataDefinition, Dataset, Report, DataDriftPreset = _import_evidently()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    features_checked = [c for c in shown if c != prediction_column] or shown
    share = max(1, math.ceil(verdict.policy.drift_share * len(features_checked))) / len(shown)
    with _REGISTRY_LOCK, warnings.catch_warnings():
        # scipy's chi-square divides by a category the reference never had; the report shows the
        # result, the user's terminal need not show scipy's warning about it.
        warnings.simplefilter("ignore", RuntimeWarning)
        methods, thresholds = _provenflow_stattests(checked, verdict.rows)
        preset = DataDriftPreset(
            columns=shown, per_column_method=methods, per_column_threshold=thresholds, drift_share=share
        )
        snapshot = Report([preset], include_tests=True).run(
            Dataset.from_pandas(cur, data_definition=definition),
            Dataset.from_pandas(ref, data_definition=definition),
        )
    return snapshot, description


def drifted_in_snapshot(snapshot: Any) -> dict[str, bool]:
    """Evidently's own per-column outcome in a snapshot: ``{column: drift detected}``."""
    prefix = "Value Drift for column "
    return {
        test["name"][len(prefix) :]: str(test["status"]).endswith("FAIL")
        for test in snapshot.dict()["tests"]
        if test["name"].startswith(prefix)
    }


def evidently_report(
    reference_sample: pd.DataFrame | None,
    reference_profile: Mapping[str, Any],
    current: pd.DataFrame,
    path: str | os.PathLike[str],
    max_rows: int = DEFAULT_MAX_ROWS,
    features: Iterable[str] | None = None,
    title: str = "Data drift",
    seed: int = 0,
    *,
    verdict: DriftResult | None = None,
    policy: DriftPolicy | None = None,
    prediction_profile: Mapping[str, Any] | None = None,
    prediction_column: str = "prediction",
) -> Path:
    """Write an Evidently ``DataDriftPreset`` HTML report of ``current`` against the reference; return its path.

    Both sides are cut to at most ``max_rows`` random rows for the charts. ``reference_sample`` is used
    when the caller has real reference rows; otherwise (``None``) a synthetic sample is drawn from
    ``reference_profile`` and the page says so. ``features`` default to the profiled columns found in
    ``current``; column types come from the profile, not from guessing. Each column's test, score and
    verdict are provenflow's (``verdict``, or ``check_drift`` run here), the prediction's too when
    ``prediction_profile`` is given. The file is written atomically.
    """
    snapshot, description = evidently_snapshot(
        reference_sample, reference_profile, current, max_rows, features, seed, verdict=verdict,
        policy=policy, prediction_profile=prediction_profile, prediction_column=prediction_column,
    )  # fmt: skip
    target = Path(path)
    _write_atomically(target, _with_title(snapshot.get_html_str(as_iframe=False), title, description))
    return target
