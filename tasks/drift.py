from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.digest import Digest
from provenflow.ledger.refs import resolve_model
from provenflow.modeling import registry
from provenflow.monitoring.drift import DriftPolicy, DriftResult, check_drift
from provenflow.workspace import Workspace


@dataclass
class Monitored:
    """A deployed model version and the reference profile stored when its training data was versioned."""

    id: int
    name: str
    version: int
    ref: str
    features: list[str]
    dates: list[str]  # date inputs: not compared (new dates are not drift)
    profile: dict
    prediction_profile: dict | None
    training_dataset: str


@task(cache_policy=NO_CACHE)
def load_reference(workspace: Workspace, model: str) -> Monitored:
    with workspace.ledger.reader() as session:
        version = resolve_model(session, model)
        dataset = registry.training_reference(session, version)
        return Monitored(
            id=version.id,
            name=version.name,
            version=version.version,
            ref=version.ref,
            # Dates move forward by nature: new dates are not drift, so date inputs are not compared.
            features=[c["name"] for c in version.signature["inputs"] if c["kind"] != "datetime"],
            dates=[c["name"] for c in version.signature["inputs"] if c["kind"] == "datetime"],
            profile=dataset.profile,
            # Its own predictions on held-out rows, recorded at training (a model-run's, or log_model's
            # eval=); a version without them has its inputs checked, not its predictions.
            prediction_profile=version.signature.get("predictions"),
            training_dataset=dataset.ref,
        )


@task(cache_policy=NO_CACHE)
def read_window(
    workspace: Workspace, model: Monitored, since: datetime, until: datetime
) -> tuple[pd.DataFrame, list[str]]:
    from provenflow.serving.predictlog.reading import read_predictions

    return read_predictions(workspace.store.url, model.name, model.version, since=since, until=until)


@task(cache_policy=NO_CACHE)
def check(model: Monitored, window: pd.DataFrame, skipped: list[str], policy: DriftPolicy) -> DriftResult:
    return check_drift(model.profile, window, policy, model.features, prediction_profile=model.prediction_profile,
                       skipped_segments=skipped)  # fmt: skip


@task(cache_policy=NO_CACHE)
def write_report(
    workspace: Workspace, model: Monitored, window: pd.DataFrame, result: DriftResult
) -> Digest | None:
    """The Evidently HTML report (charts on a bounded sample; each column's test, score and verdict
    those of ``result``, the prediction's too), kept in the store (None if there is no data)."""
    if window.empty or (not model.features and result.prediction is None):  # nothing compared
        return None
    from provenflow.monitoring.drift_report import evidently_report

    shown = [*model.features, *(["prediction"] if result.prediction and "prediction" in window else [])]
    with tempfile.TemporaryDirectory(prefix="provenflow-drift-") as tmp:
        path = evidently_report(None, model.profile, window[shown], Path(tmp) / "drift.html",
                                features=model.features, title=f"Data drift of {model.ref}", verdict=result,
                                prediction_profile=model.prediction_profile)  # fmt: skip
        return workspace.store.put_file(path).digest


@task(cache_policy=NO_CACHE)
def drift_pictures(model: Monitored, window: pd.DataFrame, drifted: list[str]) -> list[str]:
    """Per-feature histograms, training reference vs. the window, as markdown images (drifted first)."""
    from provenflow.ui.drift_card import feature_histogram

    columns = model.profile.get("columns", {})
    order = sorted(model.features, key=lambda f: f not in drifted)
    return [feature_histogram(f, columns[f], window[f]) for f in order if f in columns and f in window]


def emit_drift_event(
    model: Monitored,
    result: DriftResult,
    report_id: int | None,
    report_uri: str | None,
    policy_block: str | None = None,
) -> list[str]:
    """``provenflow.model.drift-detected``: the retrain deployment's trigger in prefect.yaml matches it,
    and hands the retrain flow POLICY_BLOCK (its retrain source, approval, or the team's own training
    deployment)."""
    from provenflow.tracking.prefect_context import emit_model_event

    return emit_model_event(
        "provenflow.model.drift-detected",
        model.name,
        model.ref,
        model.version,
        {
            "model": model.ref,
            "report_id": str(report_id) if report_id is not None else "",
            "rows": result.rows,
            "features": result.drifted_features,
            "prediction_drift": bool(result.prediction and result.prediction.drift),
            "report": report_uri or "",
            "policy_block": policy_block or "",  # "" (not None): rendered into a string parameter
        },
    )
