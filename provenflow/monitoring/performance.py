"""Realized performance: logged predictions joined with the labels that arrived later, scored per time
window with the training run's own metrics, and judged against its held-out scores under a policy.

Pure functions over DataFrames (no Prefect, no I/O): ``assess(predictions, labels, training, ...)``.

- The metrics are training's (``provenflow.modeling.training.evaluate``): accuracy, F1 (binary for two classes,
  positive class the last one, else macro), ROC AUC (one-vs-rest macro) when the log holds
  probabilities and every class occurs among the labels; RMSE, MAE, R² for regressors. They are
  computed here with numpy (a test holds them equal to scikit-learn's), because the interval below
  scores each window hundreds of times.
- The interval is a **bootstrap percentile interval** (``policy.resamples`` resamples of the labelled
  rows with replacement, seeded, so a check repeats exactly), for every metric alike; Wilson's would
  cover only accuracy.
- A window is judged only with at least ``min_labelled_rows`` labelled rows; the check decides on the
  newest window that has them (labels arrive late, so the newest window is often still unlabelled).
  It is **degraded** when the realized value is worse than the training value by more than
  ``allowed_drop`` (in the metric's own units; for RMSE and MAE worse means higher).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from provenflow.errors import ProvenflowError

CLASSIFICATION = ("accuracy", "f1", "roc_auc")
REGRESSION = ("rmse", "mae", "r2")
LOWER_IS_BETTER = frozenset({"rmse", "mae"})


class PerformanceError(ProvenflowError):
    """A quality check that cannot be made as asked (e.g. a metric the training run did not record)."""


@dataclass(frozen=True)
class PerformancePolicy:
    metric: str = "accuracy"
    allowed_drop: float = 0.05
    min_labelled_rows: int = 200
    window: timedelta = timedelta(days=1)
    windows: int = 7
    confidence: float = 0.95
    resamples: int = 500

    def check(self, task: str, training: dict[str, float]) -> None:
        known = REGRESSION if task == "regression" else CLASSIFICATION
        if self.metric not in known:
            raise PerformanceError(
                f"metric {self.metric!r} does not score a {task} model; use one of {', '.join(known)}"
            )
        if self.metric not in training:
            raise PerformanceError(
                f"the training run recorded no held-out {self.metric!r} to compare with (it has "
                f"{', '.join(sorted(training)) or 'none'}); pick one of those as the policy's metric"
            )
        if (
            self.allowed_drop < 0
            or self.min_labelled_rows < 1
            or self.windows < 1
            or not 0 < self.confidence < 1
        ):
            raise PerformanceError(
                f"policy {self} is out of range: allowed_drop >= 0, min_labelled_rows >= 1, windows >= 1, "
                "0 < confidence < 1"
            )


@dataclass(frozen=True)
class Interval:
    value: float
    low: float | None  # None: no interval asked for this metric
    high: float | None


@dataclass
class Window:
    start: datetime
    end: datetime
    predictions: int
    labelled: int
    metrics: dict[str, Interval] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "predictions": self.predictions,
                "labelled": self.labelled, "metrics": {k: asdict(v) for k, v in self.metrics.items()}}  # fmt: skip


@dataclass
class QualityResult:
    metric: str
    training: float
    threshold: float  # worse than this is degraded
    verdict: str  # "degraded" | "ok" | "not enough labels"
    windows: list[Window]
    decided: int | None  # index into windows of the window judged
    unmatched_labels: int  # labels in the store whose row the log (in this span) does not hold
    reason: str

    @property
    def degraded(self) -> bool:
        return self.verdict == "degraded"

    @property
    def judged(self) -> Window | None:
        return self.windows[self.decided] if self.decided is not None else None

    def to_dict(self) -> dict[str, Any]:
        judged = self.judged
        realized = judged.metrics.get(self.metric) if judged else None
        return {
            "metric": self.metric, "training": self.training, "threshold": self.threshold,
            "verdict": self.verdict, "degraded": self.degraded, "reason": self.reason,
            "realized": asdict(realized) if realized else None,
            "labelled": judged.labelled if judged else 0,
            "window": {"start": judged.start.isoformat(), "end": judged.end.isoformat()} if judged else None,
            "windows": [w.to_dict() for w in self.windows], "unmatched_labels": self.unmatched_labels,
        }  # fmt: skip


# -- scoring ------------------------------------------------------------------------------


def _codes(
    labels: np.ndarray, predicted: np.ndarray, classes: list[str]
) -> tuple[np.ndarray, np.ndarray, int]:
    """Both as integer codes over the classes, then any other value seen (a class the model never learnt)."""
    seen = list(classes) + sorted((set(labels.tolist()) | set(predicted.tolist())) - set(classes))
    index = {c: i for i, c in enumerate(seen)}
    return (np.fromiter((index[v] for v in labels), np.int64, len(labels)),
            np.fromiter((index[v] for v in predicted), np.int64, len(predicted)), len(seen))  # fmt: skip


# A bootstrap resample is a weight per row (how often it was drawn), so every metric below takes
# weights ``w`` (all ones: the plain value); ROC AUC then sorts each class's scores once per window,
# not once per resample (measured: 10,000 rows, 500 resamples, ~20 s with a sort each).


def _f1(y: np.ndarray, p: np.ndarray, w: np.ndarray, k: int, positive: int | None) -> float:
    hit = y == p
    tp = np.bincount(y[hit], weights=w[hit], minlength=k)
    fp = np.bincount(p, weights=w, minlength=k) - tp
    fn = np.bincount(y, weights=w, minlength=k) - tp
    denominator = 2 * tp + fp + fn
    scores = np.divide(2 * tp, denominator, out=np.zeros(k), where=denominator > 0)
    if positive is not None:
        return float(scores[positive])
    present = (np.bincount(y, weights=w, minlength=k) + np.bincount(p, weights=w, minlength=k)) > 0
    return float(scores[present].mean())  # scikit-learn's macro: over the labels present


@dataclass(frozen=True)
class _Sorted:
    """One class's scores in order, with their tie groups: Mann-Whitney in O(n) for any weights."""

    order: np.ndarray
    group: np.ndarray  # tie group of each position in ``order``
    groups: int

    @classmethod
    def of(cls, score: np.ndarray) -> _Sorted:
        order = np.argsort(score, kind="mergesort")
        ordered = score[order]
        group = np.cumsum(np.r_[True, ordered[1:] != ordered[:-1]]) - 1
        return cls(order, group, int(group[-1]) + 1 if len(group) else 0)

    def auc(self, positive: np.ndarray, w: np.ndarray) -> float:
        """The chance a positive row scores above a negative one, ties counting half."""
        wp = np.where(positive, w, 0.0)[self.order]
        wn = np.where(positive, 0.0, w)[self.order]
        pos = np.bincount(self.group, weights=wp, minlength=self.groups)
        neg = np.bincount(self.group, weights=wn, minlength=self.groups)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float(np.sum(pos * (below + neg / 2)) / (total_pos * total_neg))


def _classification(
    y: np.ndarray, p: np.ndarray, w: np.ndarray, k: int, n_classes: int, sorted_proba: list[_Sorted] | None
) -> dict:
    n = w.sum()
    out = {"accuracy": float(np.sum(w[y == p]) / n),
           "f1": _f1(y, p, w, k, n_classes - 1 if n_classes == 2 else None)}  # fmt: skip
    # As training: ROC AUC only when every class occurs among the labels (and no other value does).
    counts = np.bincount(y, weights=w, minlength=k)
    if sorted_proba is not None and (counts[:n_classes] > 0).all() and not (counts[n_classes:] > 0).any():
        if n_classes == 2:
            out["roc_auc"] = sorted_proba[1].auc(y == 1, w)
        else:
            out["roc_auc"] = float(np.mean([sorted_proba[c].auc(y == c, w) for c in range(n_classes)]))
    return out


def _regression(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> dict:
    n = w.sum()
    error = y - p
    mean = np.sum(w * y) / n
    total = float(np.sum(w * (y - mean) ** 2))
    r2 = 1 - float(np.sum(w * error**2)) / total if total > 0 else float("nan")
    return {
        "rmse": float(np.sqrt(np.sum(w * error**2) / n)),
        "mae": float(np.sum(w * np.abs(error)) / n),
        "r2": r2,
    }


def realized(
    joined: pd.DataFrame, task: str, classes: list[Any] | None, confidence: float = 0.95, resamples: int = 500,
    seed: int = 0, intervals: frozenset[str] | None = None,
) -> dict[str, Interval]:  # fmt: skip
    """Each metric on the labelled rows (``label`` beside the logged ``prediction`` and ``proba_*``),
    with its bootstrap percentile interval (only for the metrics in ``intervals``, if given)."""
    if joined.empty:
        return {}
    if task == "regression":
        y = joined["label"].to_numpy(np.float64)
        p = joined["prediction"].to_numpy(np.float64)

        def score(w: np.ndarray, auc: bool = True) -> dict:
            return _regression(y, p, w)
    else:
        names = [str(c) for c in classes or []]
        y, p, k = _codes(
            joined["label"].astype(str).to_numpy(), joined["prediction"].astype(str).to_numpy(), names
        )
        columns = [f"proba_{c}" for c in names]
        proba = joined[columns].to_numpy(np.float64) if names and all(c in joined for c in columns) else None
        ranked = (
            None
            if proba is None or np.isnan(proba).any()
            else [_Sorted.of(proba[:, c]) for c in range(len(names))]
        )

        def score(w: np.ndarray, auc: bool = True) -> dict:
            return _classification(y, p, w, k, len(names), ranked if auc else None)

    n = len(joined)
    point = score(np.ones(n))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in point if intervals is None or name in intervals}
    for _ in range(resamples if draws else 0):
        weights = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        for name, value in score(weights, "roc_auc" in draws).items():
            if name in draws and np.isfinite(value):
                draws[name].append(value)
    tail = (1 - confidence) / 2 * 100
    out = {}
    for name, value in point.items():
        if not np.isfinite(value):
            continue
        if draws.get(name):
            low, high = np.percentile(draws[name], [tail, 100 - tail])
            out[name] = Interval(value, float(low), float(high))
        else:
            out[name] = Interval(value, None, None)
    return out


# -- the check --------------------------------------------------------------------------------


def join(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Predictions that have a label (the latest per row), with the label as column ``label``."""
    if predictions.empty or labels.empty:
        return predictions.iloc[0:0].assign(label=pd.Series(dtype=object))
    keep = labels[["request_id", "row", "label"]].astype({"row": np.int64})
    return predictions.astype({"row": np.int64}).merge(keep, on=["request_id", "row"], how="inner")


def windows_of(until: datetime, policy: PerformancePolicy) -> list[tuple[datetime, datetime]]:
    """``policy.windows`` consecutive windows ending at ``until``, oldest first."""
    return [(until - (policy.windows - i) * policy.window, until - (policy.windows - i - 1) * policy.window)
            for i in range(policy.windows)]  # fmt: skip


def assess(
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    training: dict[str, float],
    task: str,
    classes: list[Any] | None,
    policy: PerformancePolicy,
    until: datetime,
) -> QualityResult:
    """Score each window of ``predictions`` (the log since ``until - windows * window``) on its
    labelled rows and judge the newest window with enough of them against ``training``."""
    policy.check(task, training)
    joined = join(predictions, labels)
    unmatched = len(labels) - len(joined) if not labels.empty else 0
    result = []
    for start, end in windows_of(until, policy):
        times = predictions["time"] if not predictions.empty else pd.Series(dtype="datetime64[us, UTC]")
        in_window = int(((times >= pd.Timestamp(start)) & (times < pd.Timestamp(end))).sum())
        part = (
            joined[(joined["time"] >= pd.Timestamp(start)) & (joined["time"] < pd.Timestamp(end))]
            if len(joined)
            else joined
        )
        metrics = (
            realized(
                part, task, classes, policy.confidence, policy.resamples, intervals=frozenset({policy.metric})
            )
            if len(part)
            else {}
        )
        result.append(Window(start, end, in_window, len(part), metrics))
    reference = training[policy.metric]
    lower = policy.metric in LOWER_IS_BETTER
    threshold = reference + policy.allowed_drop if lower else reference - policy.allowed_drop
    decided = next((i for i in reversed(range(len(result))) if result[i].labelled >= policy.min_labelled_rows
                    and policy.metric in result[i].metrics), None)  # fmt: skip
    if decided is None:
        most = max((w.labelled for w in result), default=0)
        reason = (f"no window of {policy.window} has {policy.min_labelled_rows} labelled rows with a "
                  f"{policy.metric} (at most {most}); send labels with `provenflow feedback`")  # fmt: skip
        return QualityResult(
            policy.metric, reference, threshold, "not enough labels", result, None, unmatched, reason
        )
    value = result[decided].metrics[policy.metric]
    worse = value.value > threshold if lower else value.value < threshold
    verdict = "degraded" if worse else "ok"
    reason = (f"{policy.metric} {value.value:.4f} ({policy.confidence:.0%} CI {value.low:.4f}–{value.high:.4f}, {result[decided].labelled} "
              f"labelled rows) against {reference:.4f} in training; {'worse' if worse else 'not worse'} than "
              f"the allowed {threshold:.4f}")  # fmt: skip
    return QualityResult(policy.metric, reference, threshold, verdict, result, decided, unmatched, reason)


def markdown(
    ref: str,
    result: QualityResult,
    estimates: list[dict[str, float] | None] | None = None,
    shadow: dict[str, Any] | None = None,
) -> str:
    """The ``quality-<model>`` artifact: one row per window, newest first; the estimated column only
    when an estimator ran (``estimates``, one per window); a shadow challenger's agreement and realized
    metric under it when production mirrors to one (``tasks.quality.compare_challenger``)."""
    metric = result.metric
    head = ["window", "predictions", "labelled rows", f"realized {metric} ± CI", f"training {metric}"]
    if estimates is not None:
        head.append(f"estimated {metric}")
    lines = [f"# {ref}: {result.verdict}", "", result.reason, "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]  # fmt: skip
    for i in reversed(range(len(result.windows))):
        w = result.windows[i]
        value = w.metrics.get(metric)
        shown = f"{value.value:.4f} ({value.low:.4f}–{value.high:.4f})" if value else "—"
        if i == result.decided:
            shown = f"**{shown}**"
        row = [f"{w.start:%Y-%m-%d %H:%M} – {w.end:%Y-%m-%d %H:%M}", str(w.predictions), str(w.labelled), shown,
               f"{result.training:.4f}"]  # fmt: skip
        if estimates is not None:
            estimate = estimates[i] or {}
            shown = f"{estimate[metric]:.4f}" if estimate.get(metric) is not None else "—"
            if estimate.get(f"{metric}_low") is not None and estimate.get(f"{metric}_high") is not None:
                shown += f" ({estimate[f'{metric}_low']:.4f}–{estimate[f'{metric}_high']:.4f})"
            row.append(shown)
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Degraded below {result.threshold:.4f}" if metric not in LOWER_IS_BETTER
              else f"Degraded above {result.threshold:.4f}"]  # fmt: skip
    lines[-1] += (f" ({result.unmatched_labels} labels have no logged prediction in these windows)."
                  if result.unmatched_labels else ".")  # fmt: skip
    if shadow:
        agreement = "—" if shadow["agreement"] is None else f"{shadow['agreement']:.1%}"
        realized = shadow["realized"]
        shown = f"{realized['value']:.4f} ({realized['low']:.4f}–{realized['high']:.4f})" if realized else "—"
        judged = result.judged.metrics.get(metric) if result.judged else None
        lines += ["", f"## Shadow challenger {shadow['challenger']}", "",
                  f"| rows both answered | agreement | labelled rows | its realized {metric} | production's |",
                  "|---|---|---|---|---|",
                  f"| {shadow['matched']} | {agreement} | {shadow['labelled']} | {shown} | "
                  f"{f'{judged.value:.4f}' if judged else '—'} |"]  # fmt: skip
    return "\n".join(lines)
