"""A run's warnings and notices: recorded in the ledger (migration 0007) on SQLite and PostgreSQL,
read back by the catalog, shown on the run card."""

from __future__ import annotations

import pytest

import provenflow
from provenflow.errors import ProvenflowError
from provenflow.ledger import models as m
from provenflow.tracking import catalog
from provenflow.tracking.report import run_card_markdown


def test_warnings_are_recorded_and_shown(workspace):
    with provenflow.start("warned", workspace=workspace) as run:
        run.warn("column 'grade_copy' alone predicts 'grade' (leakage)")
        run.warn("column 'id' left out (identifier)", level="notice")
        with pytest.raises(ProvenflowError, match="not 'warning' or 'notice'"):
            run.warn("x", level="error")
    with workspace.ledger.reader() as session:
        recorded = catalog.run_dict(session.get(m.Run, run.id), full=True)
    assert recorded["warnings"] == [
        {"level": "warning", "message": "column 'grade_copy' alone predicts 'grade' (leakage)"},
        {"level": "notice", "message": "column 'id' left out (identifier)"},
    ]
    card = run_card_markdown(run.summary)
    assert "## Warnings\n\n- ⚠️ column 'grade_copy' alone predicts 'grade' (leakage)" in card
    assert "## Notices\n\n- column 'id' left out (identifier)" in card


def test_a_run_without_warnings_records_none(workspace):
    with provenflow.start("quiet", workspace=workspace) as run:
        run.metric("x", 1.0)
    with workspace.ledger.reader() as session:
        assert session.get(m.Run, run.id).warnings is None
    assert "## Warnings" not in run_card_markdown(run.summary)
