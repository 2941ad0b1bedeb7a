"""promote: move a model alias (staging, production, …) to a version, behind a metric gate and a
human approval in the Prefect UI."""

from __future__ import annotations

import getpass
import sys

from prefect import get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

import provenflow
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.modeling import registry
from provenflow.tasks.registry import score_on_holdout, shadow_agreement, wait_for_approval
from provenflow.tasks.workspace import open_workspace


@flow(name="promote", flow_run_name="promote-{model}-to-{to}")
def promote(
    model: str,
    to: str = "production",
    auto_approve: bool = False,
    tolerances: dict[str, float] | None = None,
    dataset: str | None = None,
    comment: str | None = None,
    approval_timeout: int = 3600,
    approval_poll_seconds: int = 5,
    require_agreement: float | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Promote MODEL (NAME@VERSION) to the alias TO.

    The candidate and the alias's current holder are scored on the same held-out rows; the
    candidate must not be worse than the holder by more than TOLERANCES (metric → allowed drop,
    0.01 by default). Then the flow run pauses for an approval in the Prefect UI, unless
    AUTO_APPROVE. Approvals and rejections are recorded with who, when, why and the metric diff.
    REQUIRE_AGREEMENT (e.g. 0.9): the candidate must also have run as the holder's shadow challenger
    and agreed with its predictions on at least that fraction of the rows both answered.
    """
    workspace = open_workspace(ledger_block, store_block)
    parameters = {
        "model": model,
        "to": to,
        "auto_approve": auto_approve,
        "tolerances": tolerances,
        "dataset": dataset,
        "require_agreement": require_agreement,
    }
    with provenflow.start(f"promote-{model}", kind="promotion", flow="promote", parameters=parameters,
                          workspace=workspace) as run:  # fmt: skip
        registry.check_alias(to)
        scores = score_on_holdout(workspace, model, to, dataset)
        run.input(scores.candidate)  # the promotion shows downstream of the model in its lineage
        registry.metric_gate(
            scores.candidate_metrics, None, tolerances
        )  # unknown metrics fail before approval
        gate = registry.metric_gate(
            scores.candidate_metrics, scores.holder_metrics, tolerances, scores.holder, scores.dataset
        )
        gate.scored_rows, gate.left_out = scores.rows, scores.left_out
        if require_agreement is not None:
            if scores.holder is None:  # say so before any logs are read
                gate = registry.agreement_gate(gate, {}, require_agreement)
            report = shadow_agreement(workspace, scores.holder, scores.candidate)
            gate = registry.agreement_gate(gate, report, require_agreement)
            run.log_metrics({"shadow.agreement": report["agreement"], "shadow.rows": report["matched"]})
        run.log_metrics({f"candidate.{k}": v for k, v in scores.candidate_metrics.items()})
        run.log_metrics({f"holder.{k}": v for k, v in (scores.holder_metrics or {}).items()})
        if not gate.passed:
            approved, actor, why = (
                False,
                "metric gate",
                "; ".join(
                    f"{r['metric']} {r['change']:+.4f} (allowed worse by {r['tolerance']})"
                    for r in gate.rows
                    if not r["ok"]
                ),
            )
        elif auto_approve:
            approved, actor, why = True, getpass.getuser(), comment or "auto-approved"
        else:
            print(
                f"Waiting for approval in the Prefect UI: {flow_run.get_flow_run_ui_url()}",
                file=sys.stderr,
                flush=True,
            )
            decision = wait_for_approval(gate, scores, to, approval_timeout, approval_poll_seconds)
            if decision is None:
                approved, actor, why = False, "timeout", f"no decision within {approval_timeout} s"
            else:
                approved, actor, why = (
                    decision.approve,
                    decision.approver.strip(),
                    decision.comment or comment,
                )

        def write(session) -> None:
            version = session.get(m.ModelVersion, scores.candidate_id)
            record = registry.assign_alias if approved else registry.record_rejection
            record(session, version, to, actor, why, gate.as_dict(), run.id)

        run.record(write)
    outcome = {
        "run_id": run.id,
        "model": scores.candidate,
        "alias": to,
        "decision": "approved" if approved else "rejected",
        "by": actor,
        "comment": why,
        "previous": scores.holder,
        "gate": gate.as_dict(),
        "prefect_url": run.prefect_url,
    }
    if approved:
        get_run_logger().info("Approved by %s: %s moves to %s (%s)", actor, scores.candidate, to, why)
        return outcome
    # Rejected or timed out: the flow did its job (it recorded the decision), so Completed, but
    # named for the outcome, so the run list does not read as a promotion that went through.
    timed_out = actor == "timeout"
    get_run_logger().warning("%s: %s stays off %s: %s", "Timed out" if timed_out else f"Rejected by {actor}",
                             scores.candidate, to, why)  # fmt: skip
    name = "TimedOut" if timed_out else "Rejected"
    return Completed(name=name, message=f"{scores.candidate} not promoted to {to}: {why}", data=outcome)
