"""quality-monitor: is a deployed model still right? Its logged predictions joined with the labels
that arrived later (``provenflow feedback``, POST /feedback), scored per window against the training
run's held-out metrics; a decay emits ``provenflow.model.performance-degraded``, which starts retraining."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact
from sqlalchemy import select

import provenflow
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.monitoring.performance import markdown
from provenflow.tasks.quality import (
    compare_challenger,
    emit_degraded_event,
    estimate,
    judge,
    load_model,
    load_policy,
    read_labelled,
)
from provenflow.tasks.workspace import open_workspace
from provenflow.tracking.prefect_context import artifact_key


@flow(name="quality-monitor", flow_run_name="quality-{model}")
def quality_monitor(
    model: str,
    policy_block: str | None = None,
    until: datetime | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Judge MODEL's (NAME@ALIAS or NAME@VERSION) realized performance in the policy's windows up to
    UNTIL (default: now); record a quality report, show the ``quality-<model>`` artifact, and emit
    ``provenflow.model.performance-degraded`` when the newest window with enough labels decayed."""
    workspace = open_workspace(ledger_block, store_block)
    policy = load_policy(policy_block)
    until = until or datetime.now(UTC)
    since = until - policy.windows * policy.window
    parameters = {"model": model, "until": until.isoformat(), "policy_block": policy_block}
    with provenflow.start(f"quality-{model}", kind="quality", flow="quality-monitor", parameters=parameters,
                          workspace=workspace) as run:  # fmt: skip
        watched = load_model(workspace, model)
        run.input(watched.ref)
        predictions, labels, skipped = read_labelled(workspace, watched, since, until)
        result = judge(watched, predictions, labels, policy, until)
        estimates = estimate(workspace, watched, predictions, result)
        shadow = compare_challenger(workspace, watched, predictions, labels, policy, since, until)
        judged, summary = result.judged, result.to_dict()
        realized = summary["realized"] or {}
        run.log_metrics({"labelled_rows": summary["labelled"], **({f"realized.{result.metric}": realized["value"]}
                                                                  if realized else {})})  # fmt: skip
        row = m.QualityReport(
            model_version_id=watched.id, window_start=judged.start if judged else since,
            window_end=judged.end if judged else until, labelled_rows=summary["labelled"], status=result.verdict,
            degraded=result.degraded, metric=result.metric, realized=realized.get("value"),
            ci_low=realized.get("low"), ci_high=realized.get("high"), training=result.training,
            windows=summary["windows"], created_at=datetime.now(UTC), run_id=run.id,
            details={"threshold": result.threshold, "reason": result.reason, "policy": repr(policy),
                     "unmatched_labels": result.unmatched_labels, "skipped_segments": skipped,
                     "estimates": estimates, "shadow": shadow},
        )  # fmt: skip
        run.record(lambda session: session.add(row))
    with workspace.ledger.reader() as session:
        report_id = session.scalar(select(m.QualityReport.id).where(m.QualityReport.run_id == run.id))
    create_markdown_artifact(key=artifact_key("quality", watched.name), markdown=markdown(watched.ref, result, estimates, shadow),
                             description=f"realized {result.metric} of {watched.ref}: {result.verdict}")  # fmt: skip
    started = emit_degraded_event(watched, result, report_id) if result.degraded else []
    return {"model": watched.ref, **summary, "estimates": estimates, "shadow": shadow, "skipped_segments": skipped,
            "report_id": report_id, "run_id": run.id, "automations": started}  # fmt: skip
