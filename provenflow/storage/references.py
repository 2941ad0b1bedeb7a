"""Which store objects the ledger refers to, and from where.

Every ledger column that holds the hash of a store object is listed here, once: ``gc`` keeps
exactly these objects, ``verify`` checks them, and a failed run keeps the ones it shares. A new
column that names an object must be added to ``HASH_COLUMNS``, or ``gc`` will remove its objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.ledger import models as m

# The columns that name store objects: run edges (dataset, model and file inputs/outputs), the
# versions themselves, a run's uncommitted code diff, and a drift check's HTML report.
HASH_COLUMNS = (
    m.RunIO.hash,
    m.DatasetVersion.hash,
    m.ModelVersion.hash,
    m.Run.code_diff_hash,
    m.DriftReport.report_hash,
)


def referenced_hashes(session: Session, among: Iterable[str] | None = None) -> set[str]:
    """Every object hash the ledger refers to (or, given ``among``, those of them it refers to)."""
    wanted = set(among) if among is not None else None
    found: set[str] = set()
    for column in HASH_COLUMNS:
        query = select(column).where(column.is_not(None)).distinct()
        if wanted is not None:
            if not wanted:
                return found
            query = query.where(column.in_(wanted))
        found.update(session.scalars(query))
    return found


def users_of(session: Session, hashes: Iterable[str]) -> dict[str, list[str]]:
    """For each hash, what uses it: ``dataset name@version``, ``model name@N``, ``run <id> (role)``."""
    hashes = set(hashes)
    users: dict[str, list[str]] = {h: [] for h in hashes}
    if not hashes:
        return users
    for ds in session.scalars(select(m.DatasetVersion).where(m.DatasetVersion.hash.in_(hashes))):
        users[ds.hash].append(f"dataset {ds.ref}")
    for mv in session.scalars(select(m.ModelVersion).where(m.ModelVersion.hash.in_(hashes))):
        users[mv.hash].append(f"model {mv.ref}")
    for io in session.scalars(
        # Files, suites and any other kind of edge that names an object without a version row.
        select(m.RunIO)
        .where(m.RunIO.hash.in_(hashes), m.RunIO.kind.not_in(("dataset", "model")))
        .order_by(m.RunIO.id)
    ):
        users[io.hash].append(f"run {io.run_id[:8]} {io.direction} {io.name}")
    for run in session.scalars(select(m.Run).where(m.Run.code_diff_hash.in_(hashes))):
        users[run.code_diff_hash].append(f"run {run.id[:8]} code diff")
    for report in session.scalars(select(m.DriftReport).where(m.DriftReport.report_hash.in_(hashes))):
        users[report.report_hash].append(f"drift report {report.id}")
    return users
