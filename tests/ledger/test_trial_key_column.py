"""runs.trial_key (migration 0010): a sweep finds the trials already done by an indexed column, and a ledger
upgraded from 0008 keeps finding the trials recorded before it (filled from their parameters)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from provenflow.ledger import models as m
from provenflow.ledger.db import MIGRATIONS, Ledger
from provenflow.modeling.sweep import done_trials


def _run(run_id: str, parameters: dict, state: str = "completed", kind: str = "model") -> dict:
    return {"id": run_id, "kind": kind, "flow": "model-run", "name": run_id, "state": state,
            "parameters": json.dumps(parameters), "started_at": datetime.now(UTC)}  # fmt: skip


def test_an_upgraded_ledger_finds_the_trials_recorded_before(ledger_url):
    engine = create_engine(ledger_url)
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
        insert = text("INSERT INTO runs (id, kind, flow, name, state, parameters, started_at) "
                      "VALUES (:id, :kind, :flow, :name, :state, :parameters, :started_at)")  # fmt: skip
        for row in (_run("r1", {"trial_key": "a" * 64, "seed": 1}), _run("r2", {"seed": 2}),
                    _run("r3", {"trial_key": "b" * 64}, state="failed"), _run("r4", {"trial_key": None})):  # fmt: skip
            conn.execute(insert, row)
    engine.dispose()

    ledger = Ledger(ledger_url)  # migrates to head
    assert "ix_runs_trial_key" in {i["name"] for i in inspect(ledger.engine).get_indexes("runs")}
    with ledger.reader() as session:
        assert session.get(m.Run, "r1").trial_key == "a" * 64
        assert session.get(m.Run, "r2").trial_key is None and session.get(m.Run, "r4").trial_key is None
        assert done_trials(session, ["a" * 64, "b" * 64, "c" * 64]) == {"a" * 64: "r1"}  # r3 failed
    ledger.dispose()


def test_a_new_run_keeps_its_trial_key_in_the_column(workspace):
    with workspace.ledger.transaction() as session:
        session.add(m.Run(id="n1", kind="model", flow="model-run", name="n1", state="completed",
                          parameters={"trial_key": "d" * 64}, started_at=datetime.now(UTC)))  # fmt: skip
        session.add(m.Run(id="n2", kind="model", flow="model-run", name="n2", state="completed",
                          parameters={"trial_key": "d" * 64}, started_at=datetime.now(UTC)))  # fmt: skip
    with workspace.ledger.reader() as session:
        assert session.get(m.Run, "n1").trial_key == "d" * 64
        assert done_trials(session, ["d" * 64]) == {"d" * 64: "n2"}  # the latest
        keys = [f"{i:064x}" for i in range(1200)]  # more than one chunk of the IN
        assert done_trials(session, [*keys, "d" * 64]) == {"d" * 64: "n2"}


def test_a_refit_best_sweep_also_finds_the_trials_cross_validated_only(workspace):
    from provenflow.modeling.sweep import cv_only_key

    with workspace.ledger.transaction() as session:
        session.add(m.Run(id="full", kind="model", flow="model-run", name="full", state="completed",
                          parameters={"trial_key": "e" * 64}, started_at=datetime.now(UTC)))  # fmt: skip
        session.add(m.Run(id="cv", kind="model", flow="model-run", name="cv", state="completed",
                          parameters={"trial_key": cv_only_key("f" * 64)}, started_at=datetime.now(UTC)))  # fmt: skip
    with workspace.ledger.reader() as session:
        keys = ["e" * 64, "f" * 64, "0" * 64]
        assert done_trials(session, keys) == {"e" * 64: "full"}  # a sweep that wants every model
        assert done_trials(session, keys, cv_only=True) == {"e" * 64: "full", "f" * 64: "cv"}
