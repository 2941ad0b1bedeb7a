"""Making a dataset version: the one path ``data-run`` and ``provenflow.log_dataset`` share.

One streamed pass over the source stores its canonical Parquet object with its schema and
profile (``provenflow.data.ingest``); the expectation suite is chosen and the data validated
against it; the version itself is written with the run that made it (two runs of the same
content under one name are the same version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from provenflow.data import datasets, ingest, validation
from provenflow.data.credentials import Credentials
from provenflow.data.ingest import listing
from provenflow.data.ingest.many import ingest_many
from provenflow.data.ingest.stat_cache import StatCache
from provenflow.digest import Digest
from provenflow.project import project_root
from provenflow.redact import redact
from provenflow.settings import get_settings
from provenflow.tracking import catalog
from provenflow.tracking.run import DatasetOutput
from provenflow.workspace import Workspace


@dataclass(frozen=True)
class IngestedDataset:
    output: DatasetOutput  # the pending dataset version, its canonical Parquet object already stored
    sample: pd.DataFrame  # what validation sees: every row of a table up to ingest.SAMPLE_ROWS rows
    validated_on: str
    notes: list[dict]  # how the file was read, where that was inferred (dialect.Dialect.notes)
    files: list[tuple[str, Digest]] = ()  # a folder's files: relative path and raw hash (stored)
    parts: list[Digest] = ()  # a folder's version: the parts its manifest lists
    unread: int = 0  # a folder's files the stat cache knew unchanged: not read again


def ingest_source(
    workspace: Workspace,
    name: str,
    source: str,
    credentials: Credentials | None = None,
    query: str | None = None,
    table: str | None = None,
    reread: bool = False,
) -> IngestedDataset:
    """One streamed pass over SOURCE: its canonical Parquet object stored, its schema and profile,
    a bounded sample. With QUERY or TABLE, SOURCE is a SQLAlchemy URL and the rows are those of the
    query; a folder, glob or prefix is read as one table, one part per file, unchanged files not read (REREAD: every file is)."""
    store = workspace.store
    if query or table:
        read = ingest.ingest(source, ingest.workdir_for(store), credentials, query=query, table=table)
    elif listing.is_many(source):
        cache = StatCache(get_settings().ensure_home() / "stat-cache.json", trusted=not reread)
        found = listing.list_source(source, credentials)
        read = ingest_many(found, store, cache, known=lambda fingerprint: _version_of(workspace, name, fingerprint))
    else:
        read = ingest.ingest(source, ingest.workdir_for(store), credentials)
    stored = ingest.store_ingested(store, read)
    output = DatasetOutput(
        name=name,
        digest=stored.digest,
        size=stored.size,
        uri=stored.uri,
        format=datasets.PARQUET,
        repaired=stored.repaired,
        rows=read.rows,
        columns=len(read.schema),
        schema=read.schema,
        profile=read.profile,
        source=redact(source),
    )
    return IngestedDataset(output, read.sample, read.validated_on, read.notes, read.files, read.parts, read.unread)


def _version_of(workspace: Workspace, name: str, fingerprint: str) -> Digest | None:
    """NAME's latest version whose table has this fingerprint (the same rows, however cut into files)."""
    from sqlalchemy import select

    from provenflow.ledger import models as m

    with workspace.ledger.reader() as session:
        # An indexed column (migration 0012), not the versions' profiles: this runs on every data-run of a folder.
        query = select(m.DatasetVersion.hash).where(
            m.DatasetVersion.name == name, m.DatasetVersion.fingerprint == fingerprint
        )
        found = session.scalar(query.order_by(m.DatasetVersion.id.desc()).limit(1))
        if found is not None:
            return Digest(found)
    return None


def choose_suite(
    workspace: Workspace, name: str, frame: pd.DataFrame, suite: str | None, profile: dict | None = None
) -> validation.Suite:
    """SUITE if given; else expectations/NAME.json if the project has one; else the suite NAME's last
    data run kept to (from the store); else one generated from this data (also when SUITE is "new").
    Nothing is written into the source tree, so a run never leaves the code it records dirty."""
    if suite and suite != "new":
        return validation.read_suite(Path(suite))
    committed = project_root() / "expectations" / f"{name}.json"
    if committed.exists() and suite != "new":
        return validation.read_suite(committed)
    with workspace.ledger.reader() as session:
        recorded = catalog.default_suite_of(session, name)
    if recorded is not None and suite != "new":
        digest, run_id = recorded
        remedy = (
            f"If {name!r} changed on purpose, run again with --suite new (a suite generated from this "
            "data, kept by later runs) or --suite FILE."
        )
        return validation.Suite(
            workspace.store.read_bytes(Digest(digest)), f"the suite of data run {run_id}", remedy=remedy
        )
    copy = get_settings().ensure_home() / "expectations" / f"{name}.json"
    # FRAME may be a sample: which columns have gaps is known from the whole table's PROFILE.
    missing = {c: e["missing"] for c, e in profile["columns"].items()} if profile else None
    return validation.generated_suite(name, frame, str(copy), missing)


def store_suite(workspace: Workspace, suite: validation.Suite) -> Digest:
    """Keep the suite the data passed with the run; a generated one also gets a copy to read under
    the git-ignored home folder (commit it as expectations/NAME.json to change it)."""
    digest = workspace.store.put_bytes(suite.data).digest
    if suite.created:
        validation.save_suite(Path(suite.where), suite.data)
    return digest
