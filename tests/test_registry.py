"""Aliases, the metric gate and the approval in the Prefect UI."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from provenflow.errors import RefError
from provenflow.ledger.refs import resolve_model
from provenflow.modeling import registry
from provenflow.workspace import Workspace


def test_gate_passes_within_tolerance_and_names_what_fails():
    holder = {"accuracy": 0.90, "f1": 0.88, "rmse": 10.0}
    assert registry.metric_gate(
        {"accuracy": 0.895, "f1": 0.90, "rmse": 10.005}, holder, holder_ref="m@1"
    ).passed
    failed = registry.metric_gate({"accuracy": 0.85, "f1": 0.90, "rmse": 12.0}, holder, {"rmse": 0.5}, "m@1")
    assert not failed.passed
    assert {r["metric"] for r in failed.rows if not r["ok"]} == {"accuracy", "rmse"}
    assert "| accuracy | 0.8500 | 0.9000 | -0.0500 |" in failed.markdown()
    assert registry.metric_gate({"f1": 0.1}, None).passed  # nobody holds the alias yet
    with pytest.raises(registry.PromotionError, match="no metric auc"):
        registry.metric_gate({"f1": 0.5}, {"f1": 0.5}, {"auc": 0.1})


def _final_state(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


def test_an_unanswered_approval_times_out_as_such(two_models):
    from provenflow.flows.promote import promote

    good, _ = two_models
    result = promote(model=good, to="production", approval_timeout=1, approval_poll_seconds=1)
    assert result["decision"] == "rejected" and result["by"] == "timeout"
    state = _final_state(result["run_id"])
    assert (state.type.value, state.name) == (
        "COMPLETED",
        "TimedOut",
    ) and "no decision within 1 s" in state.message
    assert any(
        f"Timed out: {good} stays off production: no decision within 1 s" in line
        for line in _logs(result["run_id"])
    )


def _logs(flow_run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        return [
            log.message
            for log in client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        ]


@pytest.fixture
def two_models(prefect_api, project, penguins):
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run

    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    good = model_run(dataset=ref, target="sex", estimator="sklearn.ensemble.RandomForestClassifier",
                     params={"n_estimators": 100}, seed=7)  # fmt: skip
    weak = model_run(dataset=ref, target="sex", estimator="sklearn.dummy.DummyClassifier", seed=7)
    return f"penguins-sex@{good['model']['version']}", f"penguins-sex@{weak['model']['version']}"


def test_promotion_with_gate_and_history(two_models):
    from provenflow.flows.promote import promote

    good, weak = two_models
    first = promote(model=good, to="production", auto_approve=True, comment="first release")
    assert first["decision"] == "approved" and first["previous"] is None
    worse = promote(model=weak, to="production", auto_approve=True)
    assert worse["decision"] == "rejected" and worse["by"] == "metric gate"
    assert _final_state(worse["run_id"]).name == "Rejected"  # not a plain Completed in the run list
    assert any(line.startswith("Rejected by metric gate: ") for line in _logs(worse["run_id"]))
    assert worse["previous"] == good and "accuracy" in worse["comment"]
    with Workspace.default().ledger.reader() as s:
        assert resolve_model(s, "penguins-sex@production").ref == good
        history = registry.alias_history(s, "penguins-sex")
        assert [(h["action"], h["to_version"], h["actor"]) for h in history] == [
            ("assigned", 1, first["by"]),
            ("rejected", 2, "metric gate"),
        ]
        assert history[0]["comment"] == "first release"
        with pytest.raises(RefError, match="Its aliases: production"):
            resolve_model(s, "penguins-sex@staging")
    # A lenient gate lets the weak model take staging; production stays.
    lenient = promote(
        model=weak, to="staging", auto_approve=True, tolerances={"accuracy": 1, "f1": 1, "roc_auc": 1}
    )
    assert lenient["decision"] == "approved"
    with Workspace.default().ledger.reader() as s:
        assert registry.aliases(s, "penguins-sex") == {"production": 1, "staging": 2}


@pytest.mark.parametrize("approve", [True, False])
def test_approval_in_the_prefect_ui(two_models, approve):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.flow_runs import resume_flow_run

    from provenflow.flows.promote import promote

    good, _ = two_models
    result: dict = {}
    # In a thread that carries this context, so the flow talks to the test's Prefect server.
    context = contextvars.copy_context()
    worker = threading.Thread(
        target=context.run,
        args=(
            lambda: result.update(
                promote(model=good, to="production", approval_poll_seconds=1, approval_timeout=120)
            ),
        ),
    )
    worker.start()
    paused = None
    deadline = time.monotonic() + 90
    seen = []
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and paused is None:
            for run in client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=20):
                seen.append((run.name, run.state_type))
                if run.name.startswith("promote-") and run.state and run.state.is_paused():
                    paused = run
            time.sleep(0.5)
    assert paused is not None, f"the promote flow run never paused for approval: {seen[-10:]}"
    # Submit without a decision or a name decides nothing: the form requires both.
    for partial in ({"comment": "looks fine"}, {"decision": "approve", "comment": "no name"}):
        with pytest.raises(RuntimeError, match=r"does not match schema|required"):
            resume_flow_run(paused.id, run_input=partial)
    decision = "approve" if approve else "reject"
    resume_flow_run(
        paused.id,
        run_input={"decision": decision, "approver": "Ada Lovelace", "comment": "reviewed the metric diff"},
    )
    worker.join(timeout=90)
    assert result["decision"] == ("approved" if approve else "rejected")
    assert result["by"] == "Ada Lovelace" and result["comment"] == "reviewed the metric diff"
    state = _final_state(paused.id)
    assert (state.type.value, state.name) == (
        ("COMPLETED", "Completed") if approve else ("COMPLETED", "Rejected")
    )
    if not approve:
        assert "not promoted to production: reviewed the metric diff" in state.message
    with Workspace.default().ledger.reader() as s:
        assert registry.aliases(s, "penguins-sex") == ({"production": 1} if approve else {})
        assert registry.alias_history(s, "penguins-sex")[-1]["action"] == (
            "assigned" if approve else "rejected"
        )


def test_bad_aliases_and_tolerances_fail_before_any_approval(two_models):
    from provenflow.flows.promote import promote

    good, _ = two_models
    with pytest.raises(registry.PromotionError, match="reads as a version"):
        promote(model=good, to="latest")  # no auto-approve: it would have paused otherwise
    with pytest.raises(registry.PromotionError, match="no metric rmse"):
        promote(model=good, to="staging", auto_approve=True, tolerances={"rmse": 0.1})
    with Workspace.default().ledger.reader() as s:
        assert registry.aliases(s, "penguins-sex") == {}


def test_the_gate_leaves_out_the_held_out_rows_the_holder_trained_on(prefect_api, project, penguins, tmp_path):
    """A champion trained on last month's data, a challenger on this month's (last month's rows and
    new ones): about three quarters of the challenger's held-out rows are rows the champion trained
    on. Before, the gate scored the champion on them too (a team's retrain was rejected against a
    champion scored 43.72 RMSE there, 46.05 on rows it had not seen)."""
    import pandas as pd

    from provenflow.data.datasets import read_table
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run
    from provenflow.flows.promote import promote
    from provenflow.modeling.training import split_rows

    rf = "sklearn.ensemble.RandomForestClassifier"
    last = read_table(str(penguins))
    old = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    champion = model_run(dataset=old, target="sex", estimator=rf, params={"n_estimators": 50}, seed=7)
    promote(model=f"penguins-sex@{champion['model']['version']}", to="production", auto_approve=True)
    newer = pd.concat([last, last.sample(n=120, random_state=1).assign(bill_length_mm=lambda f: f["bill_length_mm"] + 0.5)])
    newer.to_csv(tmp_path / "penguins-newer.csv", index=False)
    new = data_run(name="penguins", source=str(tmp_path / "penguins-newer.csv"))["dataset"]["ref"]
    challenger = model_run(dataset=new, target="sex", estimator=rf, params={"n_estimators": 50}, seed=8)
    result = promote(model=f"penguins-sex@{challenger['model']['version']}", to="production", auto_approve=True)

    # The same rows, found without provenflow's hashing: the challenger's held-out rows, merged with
    # the rows the champion trained on.
    x_old, _, y_old, _ = split_rows(last, "sex", "classification", 7, 0.25)
    _, x_new, _, y_new = split_rows(newer, "sex", "classification", 8, 0.25)
    held_out = x_new.assign(sex=y_new).reset_index(drop=True)
    seen = x_old.assign(sex=y_old).drop_duplicates()
    overlap = len(held_out.merge(seen, how="inner", on=list(held_out.columns)))
    assert overlap > len(held_out) // 2
    gate = result["gate"]
    assert (gate["left_out"], gate["scored_rows"]) == (overlap, len(held_out) - overlap), gate
