from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.input import RunInput
from pydantic import Field

from provenflow.data import datasets
from provenflow.digest import Digest
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_dataset, resolve_model
from provenflow.modeling import holdout, registry, training
from provenflow.workspace import Workspace


@dataclass
class HoldoutScores:
    candidate: str
    candidate_id: int
    holder: str | None
    holder_id: int | None
    dataset: str
    candidate_metrics: dict[str, float]
    holder_metrics: dict[str, float] | None
    rows: int = 0  # the rows both were scored on
    left_out: int = 0  # held-out rows of the candidate that the holder trained on: not scored


class Approval(RunInput):
    """The form the Prefect UI shows on a paused promotion. The decision and the approver's name
    have no default: Submit alone does not decide (Prefect OSS has no users, so the name is asked)."""

    decision: Literal["approve", "reject"] = Field(
        description="Move the alias to this model version (approve), or leave it where it is (reject)."
    )
    approver: str = Field(min_length=1, max_length=128, description="Your name; recorded with the decision.")
    comment: str = Field(default="", description="Why; recorded with the decision.")

    @property
    def approve(self) -> bool:
        return self.decision == "approve"


@task(cache_policy=NO_CACHE)
def score_on_holdout(workspace: Workspace, model: str, alias: str, dataset: str | None) -> HoldoutScores:
    """Both the candidate and the alias's current holder, scored on the same held-out rows: those
    the candidate's training run held out (or the held-out part of DATASET), less the rows the holder
    trained on (``provenflow.modeling.holdout``)."""
    store = workspace.store
    with workspace.ledger.reader() as session:
        candidate = resolve_model(session, model)
        holder = registry.holder_of(session, candidate.name, alias)
        run = session.get(m.Run, candidate.run_id)
        params = run.parameters if run else {}
        if dataset:
            data = resolve_dataset(session, dataset)
        else:
            trained_on = next((io for io in run.io if io.direction == "input" and io.kind == "dataset"), None)
            data = trained_on.dataset_version if trained_on else None
            if data is None and not (candidate.signature or {}).get("eval_rows"):
                raise registry.PromotionError(
                    f"{candidate.ref} records no training dataset; name one with --dataset"
                )
    target = (candidate.signature.get("target") or {}).get("name")
    if not target:  # a team's own model logged without labels: nothing to score it against
        raise registry.PromotionError(
            f"{candidate.ref} records no target column, so the gate cannot score it; log it with "
            "provenflow.log_model(..., eval=(X, y)) or target='COLUMN'"
        )
    if not dataset and (candidate.signature or {}).get("eval_rows"):
        # The rows the team's own code held out, as log_model was given them: not a re-split guessed
        # with model-run's seed, which would hold out rows the team's model trained on.
        held = datasets.load_table(store, Digest(candidate.signature["eval_rows"]))
        x_test, y_test = held.drop(columns=[target]), held[target]
        scored_on = f"{data.ref if data else candidate.ref} (the rows its eval= held out)"
    else:
        frame = datasets.load_table(store, Digest(data.hash))
        scored_on = data.ref
        _, x_test, _, y_test = training.split_rows(
            frame, target, candidate.task, int(params.get("seed", 42)), float(params.get("test_size", 0.25)),
            forced=params.get("task") == "classification",
        )  # fmt: skip

    def score(version: m.ModelVersion) -> dict[str, float]:
        pipeline = training.load_model(store, version)
        # Only its inputs, as the server gives them: a team's own model need not pick its columns.
        inputs = [i["name"] for i in (version.signature or {}).get("inputs") or []]
        rows = x_test[inputs] if inputs and set(inputs) <= set(x_test.columns) else x_test
        return training.evaluate(pipeline, rows, y_test, version.task)

    same = holder is not None and holder.id == candidate.id
    left_out = 0
    if holder is not None and not same:  # rows the holder trained on would flatter it
        with workspace.ledger.reader() as session:
            seen = holdout.trained_on(store, session.get(m.Run, holder.run_id), target, holder.task,
                                      data.hash if data else "",
                                      (holder.signature or {}).get("eval_rows"))  # fmt: skip
        x_test, y_test, left_out = holdout.unseen(x_test, y_test, seen)
        if len(x_test) < holdout.MIN_ROWS:
            raise registry.PromotionError(
                f"only {len(x_test)} of the held-out rows of {scored_on} are rows {holder.ref} did not train on "
                f"({left_out} it did); score both on newer data: provenflow promote {candidate.ref} --dataset NAME@VERSION"
            )
    return HoldoutScores(
        candidate=candidate.ref,
        candidate_id=candidate.id,
        holder=holder.ref if holder and not same else None,
        holder_id=holder.id if holder and not same else None,
        dataset=scored_on,
        candidate_metrics=score(candidate),
        holder_metrics=score(holder) if holder and not same else None,
        rows=len(x_test),
        left_out=left_out,
    )


def wait_for_approval(
    gate: registry.GateResult, scores: HoldoutScores, alias: str, timeout: int, poll: int
) -> Approval | None:
    """Pause the flow run until someone approves or rejects in the Prefect UI (None on timeout)."""
    from prefect.flow_runs import pause_flow_run

    description = f"## Promote `{scores.candidate}` to `{alias}`?\n\n{gate.markdown()}"
    from prefect.exceptions import FlowPauseTimeout

    try:
        return pause_flow_run(
            wait_for_input=Approval.with_initial_data(description=description),
            timeout=timeout,
            poll_interval=poll,
        )
    except FlowPauseTimeout:
        _take_back_expired_pause(f"no decision within {timeout} s")
        return None


def _take_back_expired_pause(why: str) -> None:
    """After the pause's deadline the server turns any next state into Failed "never resumed", which
    would hide the outcome: set Running again (forced) so the flow records the timeout and ends in
    its own state, named for it."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import flow_run
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run.get_id(), Running(message=why), force=True)


@task(cache_policy=NO_CACHE)
def shadow_agreement(workspace: Workspace, production: str, challenger: str) -> dict:
    """How often CHALLENGER, shadowing PRODUCTION, agreed with it (all logged rows)."""
    from provenflow.monitoring.shadow import shadow_agreement as agreement

    return agreement(workspace, production, challenger)
