"""drift-monitor: is a deployed model still seeing data like its training data? If not, say so
with a Prefect event that starts retraining."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlalchemy import select

import provenflow
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.monitoring.drift import DriftPolicy
from provenflow.monitoring.reports import report_url
from provenflow.tasks.drift import (
    check,
    drift_pictures,
    emit_drift_event,
    load_reference,
    read_window,
    write_report,
)
from provenflow.tasks.workspace import open_workspace
from provenflow.tracking.prefect_context import artifact_key
from provenflow.ui.drift_card import drift_history_rows, drift_markdown


@flow(name="drift-monitor", flow_run_name="drift-{model}")
def drift_monitor(
    model: str,
    since: datetime | None = None,
    policy_block: str | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Compare MODEL's (NAME@ALIAS or NAME@VERSION) logged predictions since SINCE (default: the
    policy's window) with the profile stored for its training data; record a drift report, show it
    in the UI, and emit ``provenflow.model.drift-detected`` when it drifted."""
    workspace = open_workspace(ledger_block, store_block)
    policy = DriftPolicy()
    if policy_block:
        from provenflow.blocks.drift import DriftPolicy as PolicyBlock

        policy = PolicyBlock.load(policy_block).policy()
    until = datetime.now(UTC)
    since = since or until - policy.window
    parameters = {"model": model, "since": since.isoformat(), "policy_block": policy_block}
    with provenflow.start(f"drift-{model}", kind="drift", flow="drift-monitor", parameters=parameters,
                          workspace=workspace) as run:  # fmt: skip
        monitored = load_reference(workspace, model)
        run.input(monitored.ref)  # the check shows downstream of the model in its lineage
        window, skipped = read_window(workspace, monitored, since, until)
        result = check(monitored, window, skipped, policy)
        report = (
            write_report(workspace, monitored, window, result)
            if result.verdict != "not enough data"
            else None
        )
        if report:
            run.link("output", "file", "drift-report.html", report)
        run.log_metrics({"rows": result.rows, "drifted_features": len(result.drifted_features)})
        row = m.DriftReport(
            model_version_id=monitored.id, window_start=since, window_end=until, rows=result.rows,
            status=result.verdict, drift=result.drift, features=result.to_dict()["features"],
            details={k: v for k, v in result.to_dict().items() if k != "features"},
            report_hash=report.hex if report else None, run_id=run.id, created_at=until,
        )  # fmt: skip
        run.record(lambda session: session.add(row))
    with workspace.ledger.reader() as session:
        report_id = session.scalar(select(m.DriftReport.id).where(m.DriftReport.run_id == run.id))
        history = drift_history_rows(session, monitored.name)
    report_uri = workspace.store.uri(report) if report else None
    create_table_artifact(key=artifact_key("drift", monitored.name), table=history,
                          description=f"drift checks of {monitored.name} over time, newest first")  # fmt: skip
    create_markdown_artifact(
        key=artifact_key("drift-report", monitored.name),
        description=f"drift of {monitored.ref}: {result.verdict}",
        markdown=drift_markdown(
            monitored.ref, result.verdict, result.rows, since, monitored.training_dataset,
            result.drifted_columns, result.reason, report_url(report) if report else None,
            drift_pictures(monitored, window, result.drifted_features),
            result.table(),
        ),
    )  # fmt: skip
    started = emit_drift_event(monitored, result, report_id, report_uri, policy_block) if result.drift else []
    return {
        "model": monitored.ref,
        "window": {"since": since.isoformat(), "until": until.isoformat()},
        "rows": result.rows,
        "drift": result.drift,
        "verdict": result.verdict,
        "reason": result.reason,
        "features": result.to_dict()["features"],
        "prediction": result.to_dict()["prediction"],
        "skipped_segments": list(skipped),
        "not_compared": monitored.dates,
        # A version recorded before its held-out predictions were kept: its prediction is not compared.
        "prediction_compared": monitored.prediction_profile is not None,
        "report": report_uri,
        "report_url": report_url(report) if report else None,
        "automations": started,  # the enabled automations its drift event starts (a retrain)
        "report_id": report_id,
        "run_id": run.id,
    }
