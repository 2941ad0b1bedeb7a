"""Runs whose process died are marked crashed; runs whose process lives (or runs elsewhere) are not."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime

from provenflow.ledger import models as m
from provenflow.tracking import crashes


def _running(workspace, pid: int, identity: str | None, host: str | None = None) -> str:
    run_id = str(uuid.uuid4())
    with workspace.ledger.transaction() as session:
        session.add(
            m.Run(
                id=run_id, kind="data", flow="data-run", name="x", state="running", parameters={},
                host=host or socket.gethostname(), pid=pid, process=identity, started_at=datetime.now(UTC),
            )
        )  # fmt: skip
    return run_id


def _state(workspace, run_id: str) -> str:
    with workspace.ledger.reader() as session:
        return session.get(m.Run, run_id).state


def test_only_runs_whose_process_died_here_are_marked_crashed(workspace):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = crashes.process_identity(child.pid)
    child.wait()
    dead = _running(workspace, child.pid, identity)
    _, me, my_identity = crashes.this_process()
    alive = _running(workspace, me, my_identity)
    reused = _running(workspace, me, "another-boot:12345")  # the pid now names another process
    elsewhere = _running(workspace, child.pid, identity, host="another-host")

    marked = crashes.mark_crashed(workspace.ledger)

    assert {c.id for c in marked} == {dead, reused}
    assert [_state(workspace, r) for r in (dead, alive, reused, elsewhere)] == [
        "crashed", "running", "crashed", "running"
    ]  # fmt: skip
    with workspace.ledger.reader() as session:
        assert f"pid {child.pid} on {socket.gethostname()}" in session.get(m.Run, dead).error
    assert crashes.mark_crashed(workspace.ledger) == []  # once


def test_a_run_started_in_this_process_is_recorded_running_then_completed(workspace):
    import provenflow

    run = provenflow.start("probe", workspace=workspace)
    assert _state(workspace, run.id) == "running"
    with workspace.ledger.reader() as session:
        row = session.get(m.Run, run.id)
        assert (row.host, row.pid) == crashes.this_process()[:2]
    assert crashes.mark_crashed(workspace.ledger) == []
    run.end()
    assert _state(workspace, run.id) == "completed"


def test_ended_runs_whose_process_died_are_settled_once(workspace):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = crashes.process_identity(child.pid)
    child.wait()
    gone, alive = _running(workspace, child.pid, identity), _running(workspace, *crashes.this_process()[1:])
    with workspace.ledger.transaction() as session:
        for run_id in (gone, alive):
            session.get(m.Run, run_id).state = "completed"
    assert crashes.ended_unsettled(workspace.ledger) == {gone: None}
    assert crashes.settle_ended(workspace.ledger) == []  # no flow run to end in Prefect
    assert crashes.ended_unsettled(workspace.ledger) == {}
    with workspace.ledger.reader() as session:
        assert session.get(m.Run, gone).process is None and session.get(m.Run, alive).process is not None
