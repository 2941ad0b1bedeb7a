"""Runs whose process died: a run row is written as ``running`` when the run starts, with its
host, pid and the process's start identity; a later command on the same host that finds the
process gone (or its pid reused by another process) marks the run ``crashed``.

Runs on other hosts are left alone here: their flow runs are ended in Prefect by the crash
automation (provenflow.prefect_crash), and this module then follows Prefect's verdict.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update

from provenflow.ledger import models as m
from provenflow.ledger.db import Ledger


@dataclass(frozen=True)
class CrashedRun:
    id: str
    name: str
    flow: str
    pid: int | None
    prefect_flow_run_id: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:36]
    except OSError:
        return ""


def process_identity(pid: int) -> str | None:
    """``<boot id>:<start time in clock ticks>`` of a live process, or None when there is none.

    Two processes with the same pid never share it: a pid reused after a crash (or a reboot)
    names a different process. None also where /proc is missing (not Linux): unknown.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields restart after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{_boot_id()}:{fields[19]}"


def this_process() -> tuple[str, int, str | None]:
    pid = os.getpid()
    return socket.gethostname(), pid, process_identity(pid)


def is_dead(host: str | None, pid: int | None, identity: str | None) -> bool:
    """True only when it is certain: same host, /proc readable, and the process is gone or another."""
    if host != socket.gethostname() or pid is None or identity is None or not Path("/proc/self").exists():
        return False
    return process_identity(pid) != identity


def find_crashed(ledger: Ledger) -> list[CrashedRun]:
    """This host's running runs whose process died, as mark_crashed would mark them (marks nothing)."""
    host = socket.gethostname()
    with ledger.reader() as session:
        candidates = session.scalars(select(m.Run).where(m.Run.state == "running", m.Run.host == host)).all()
        return [
            CrashedRun(r.id, r.name, r.flow, r.pid, r.prefect_flow_run_id)
            for r in candidates
            if is_dead(r.host, r.pid, r.process)
        ]


def mark_crashed(ledger: Ledger) -> list[CrashedRun]:
    """Mark this host's running runs whose process died as crashed; returns them."""
    host = socket.gethostname()
    with ledger.reader() as session:
        candidates = session.scalars(select(m.Run).where(m.Run.state == "running", m.Run.host == host)).all()
        dead = [r for r in candidates if is_dead(r.host, r.pid, r.process)]
    return _mark(ledger, dead, "its process (pid {pid} on {host}) died before the run ended")


def mark_crashed_by_prefect(ledger: Ledger, crashed_flow_runs: set[str]) -> list[CrashedRun]:
    """Mark running runs whose Prefect flow run Prefect has ended as crashed (other hosts)."""
    if not crashed_flow_runs:
        return []
    with ledger.reader() as session:
        dead = session.scalars(
            select(m.Run).where(m.Run.state == "running", m.Run.prefect_flow_run_id.in_(crashed_flow_runs))
        ).all()
    return _mark(ledger, list(dead), "Prefect marked its flow run crashed (no heartbeat from {host})")


def running_flow_runs(ledger: Ledger) -> set[str]:
    """Prefect flow-run ids of runs the ledger still has as running."""
    with ledger.reader() as session:
        return set(
            session.scalars(
                select(m.Run.prefect_flow_run_id).where(
                    m.Run.state == "running", m.Run.prefect_flow_run_id.is_not(None)
                )
            )
        )


def _mark(ledger: Ledger, runs: list[m.Run], why: str) -> list[CrashedRun]:
    marked: list[CrashedRun] = []
    if not runs:
        return marked
    now = datetime.now(UTC)
    with ledger.transaction() as session:
        for run in runs:
            # Only if still running: the run may have ended, or another command marked it, meanwhile.
            done = session.execute(
                update(m.Run)
                .where(m.Run.id == run.id, m.Run.state == "running")
                .values(state="crashed", ended_at=now, error=why.format(pid=run.pid, host=run.host))
            )
            if done.rowcount:
                marked.append(CrashedRun(run.id, run.name, run.flow, run.pid, run.prefect_flow_run_id))
    return marked


def ended_unsettled(ledger: Ledger) -> dict[str, str]:
    """Runs of this host recorded as ended whose process is gone but whose end Prefect may not
    have heard (a kill during Prefect's teardown): run id → flow-run id."""
    host = socket.gethostname()
    with ledger.reader() as session:
        rows = session.execute(
            select(m.Run.id, m.Run.prefect_flow_run_id, m.Run.pid, m.Run.process).where(
                m.Run.state.in_(("completed", "failed")), m.Run.host == host, m.Run.process.is_not(None)
            )
        ).all()
    return {r.id: r.prefect_flow_run_id for r in rows if is_dead(host, r.pid, r.process)}


def settle_ended(ledger: Ledger) -> list[str]:
    """End in Prefect the flow runs of runs whose process died after recording them, then forget
    those processes; returns the flow-run ids set Crashed."""
    from provenflow.platform import prefect_crashes

    unsettled = ended_unsettled(ledger)
    flow_runs = [f for f in unsettled.values() if f]
    crashed = (
        prefect_crashes.crash_flow_runs(flow_runs, "its process died after the run was recorded")
        if flow_runs
        else []
    )
    if unsettled:
        with ledger.transaction() as session:
            session.execute(update(m.Run).where(m.Run.id.in_(list(unsettled))).values(pid=None, process=None))
    return crashed


def end_in_prefect(crashed: list[CrashedRun]) -> list[str]:
    """Set the Prefect flow runs of runs found dead here to Crashed; their ids."""
    from provenflow.platform import prefect_crashes

    ids = [c.prefect_flow_run_id for c in crashed if c.prefect_flow_run_id]
    return prefect_crashes.crash_flow_runs(ids, "its process died (found by provenflow)") if ids else []


def follow_prefect(ledger: Ledger) -> list[CrashedRun]:
    """Mark runs crashed whose flow runs Prefect ended as Crashed (runs of other hosts)."""
    from provenflow.platform import prefect_crashes

    running = running_flow_runs(ledger)
    return mark_crashed_by_prefect(ledger, prefect_crashes.crashed_flow_runs(running)) if running else []


def settle(ledger: Ledger, prefect: bool) -> tuple[list[CrashedRun], str | None]:
    """Mark dead runs crashed in the ledger and, with ``prefect``, in Prefect (both ways).

    Returns the runs marked and a note when Prefect could not be reached (the crash automation
    on the server still ends those flow runs in bounded time).
    """
    crashed = mark_crashed(ledger)
    if not prefect:
        return crashed, None
    more, note = settle_in_prefect(crashed, ledger)
    return crashed + more, note


def settle_in_prefect(
    crashed: list[CrashedRun], ledger: Ledger | None = None
) -> tuple[list[CrashedRun], str | None]:
    """End the flow runs of ``crashed`` in Prefect; with ``ledger``, also mark the ledger's running
    runs whose flow runs Prefect has ended. Returns those and a note if Prefect did not answer."""
    try:
        end_in_prefect(crashed)
        if ledger is None:
            return [], None
        settle_ended(ledger)
        return follow_prefect(ledger), None
    except Exception as exc:  # Prefect being away must not stop the command
        return [], f"could not update Prefect ({type(exc).__name__}: {exc})"
