from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.errors import ProvenflowError
from provenflow.ledger.refs import resolve_model
from provenflow.monitoring.performance import PerformancePolicy, QualityResult, assess
from provenflow.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class Watched:
    """A deployed model version, what it predicts, and its training run's held-out metrics."""

    id: int
    name: str
    version: int
    ref: str
    task: str
    classes: list[Any] | None
    training: dict[str, float]


@task(cache_policy=NO_CACHE)
def load_model(workspace: Workspace, model: str) -> Watched:
    with workspace.ledger.reader() as session:
        version = resolve_model(session, model)
        task_ = version.task or (
            "classification" if (version.signature or {}).get("classes") else "regression"
        )
        classes = (version.signature or {}).get("classes") if task_ != "regression" else None
        return Watched(version.id, version.name, version.version, version.ref, task_, classes,
                       dict(version.metrics or {}))  # fmt: skip


def load_policy(policy_block: str | None) -> PerformancePolicy:
    if not policy_block:
        return PerformancePolicy()
    from provenflow.blocks.performance import PerformancePolicy as PolicyBlock

    return PolicyBlock.load(policy_block).policy()


@task(cache_policy=NO_CACHE)
def read_labelled(
    workspace: Workspace, model: Watched, since: datetime, until: datetime
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The logged predictions of the span, the latest label of every row, and unreadable segments."""
    from provenflow.serving.feedback import read_feedback
    from provenflow.serving.predictlog.reading import read_predictions

    # What scoring needs, not the inputs: a week of a busy model's log is mostly its inputs.
    wanted = {"request_id", "row", "time", "prediction", *(f"proba_{c}" for c in model.classes or [])}
    predictions, skipped = read_predictions(
        workspace.store.url, model.name, model.version, since=since, until=until, columns=wanted
    )
    return predictions, read_feedback(workspace.store.url, model.name, model.version), skipped


@task(cache_policy=NO_CACHE)
def judge(
    model: Watched,
    predictions: pd.DataFrame,
    labels: pd.DataFrame,
    policy: PerformancePolicy,
    until: datetime,
) -> QualityResult:
    return assess(predictions, labels, model.training, model.task, model.classes, policy, until)


@task(cache_policy=NO_CACHE)
def estimate(
    workspace: Workspace, model: Watched, predictions: pd.DataFrame, result: QualityResult
) -> list[dict[str, float] | None] | None:
    """Estimated performance per window, before labels arrive (``provenflow.monitoring.estimation``, CBPE), or
    None where that module is not installed: the report then has no estimated column."""
    try:
        from provenflow.monitoring import estimation
    except ModuleNotFoundError as exc:
        if exc.name != "provenflow.monitoring.estimation":
            raise
        return None
    try:  # once for every window: the held-out rows are read and the calibration fitted once
        reference = estimation.load_reference(workspace, model.ref)
    except estimation.EstimationUnavailable:
        return [None] * len(result.windows)
    out: list[dict[str, float] | None] = []
    for window in result.windows:
        part = predictions
        if not predictions.empty:
            part = predictions[(predictions["time"] >= pd.Timestamp(window.start))
                               & (predictions["time"] < pd.Timestamp(window.end))]  # fmt: skip
        try:
            proba, predicted = estimation.window_of(reference, part)
            out.append(estimation.estimate(reference, proba, predicted) if len(proba) else None)
        except estimation.EstimationUnavailable:  # e.g. a log without probabilities: no estimate
            out.append(None)
        except ProvenflowError as exc:  # an estimate is extra information: the realized check goes on
            log.warning(
                "no performance estimate for %s in %s – %s: %s", model.ref, window.start, window.end, exc
            )
            out.append(None)
    return out


@task(cache_policy=NO_CACHE)
def compare_challenger(
    workspace: Workspace, model: Watched, predictions: pd.DataFrame, labels: pd.DataFrame,
    policy: PerformancePolicy, since: datetime, until: datetime,
) -> dict[str, Any] | None:  # fmt: skip
    """When MODEL mirrors to a shadow challenger: their agreement over the span (PREDICTIONS are
    MODEL's, already read), and the challenger's realized performance on the same labels (its log
    rows carry production's request ids). The challenger's log is read once for both."""
    from provenflow.monitoring.shadow import compare_predictions, current_shadow
    from provenflow.serving.predictlog.reading import read_predictions

    challenger_ref = current_shadow(workspace, model.ref)
    if challenger_ref is None:
        return None
    challenger = load_model.fn(workspace, challenger_ref)
    wanted = {"request_id", "row", "time", "prediction", *(f"proba_{c}" for c in challenger.classes or [])}
    # No `until`: the challenger answers a mirrored copy after production, so its rows may be later.
    answers, _ = read_predictions(
        workspace.store.url, challenger.name, challenger.version, since=since, columns=wanted
    )
    agreement = compare_predictions(predictions, answers, policy.window)
    realized = assess(answers, labels, challenger.training, challenger.task, challenger.classes, policy, until)
    return {"challenger": challenger.ref, "agreement": agreement["agreement"], "matched": agreement["matched"],
            "coverage": agreement["coverage"], "realized": realized.to_dict()["realized"],
            "labelled": realized.to_dict()["labelled"], "metric": realized.metric}  # fmt: skip


def emit_degraded_event(model: Watched, result: QualityResult, report_id: int | None) -> list[str]:
    """``provenflow.model.performance-degraded``: prefect.yaml's retrain deployment has a trigger for it."""
    from provenflow.tracking.prefect_context import emit_model_event

    judged = result.judged
    realized = judged.metrics[result.metric] if judged else None
    return emit_model_event(
        "provenflow.model.performance-degraded",
        model.name,
        model.ref,
        model.version,
        {
            "model": model.ref,
            "report_id": str(report_id) if report_id is not None else "",
            "metric": result.metric,
            "realized": realized.value if realized else None,
            "ci": [realized.low, realized.high] if realized else None,
            "training": result.training,
            "threshold": result.threshold,
            "labelled": judged.labelled if judged else 0,
            "window": [judged.start.isoformat(), judged.end.isoformat()] if judged else None,
        },
    )
