from __future__ import annotations

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.data import datasets, validation, versioning
from provenflow.data.credentials import Credentials
from provenflow.data.versioning import IngestedDataset  # re-exported: tasks.data.IngestedDataset
from provenflow.digest import Digest
from provenflow.workspace import Workspace


def _credentials(block: str | None) -> Credentials | None:
    if not block:
        return None
    from provenflow.blocks.credentials import load_credentials

    return load_credentials(block)


@task(cache_policy=NO_CACHE)
def ingest_source(
    workspace: Workspace,
    name: str,
    source: str,
    credentials_block: str | None = None,
    query: str | None = None,
    table: str | None = None,
    reread: bool = False,
) -> IngestedDataset:
    """One streamed pass over the source (read with the credentials in CREDENTIALS_BLOCK, a Secret
    block, if any): its canonical Parquet object stored, its schema and profile, a bounded sample.
    With QUERY or TABLE, SOURCE is a SQLAlchemy URL and the rows are those of the query."""
    return versioning.ingest_source(
        workspace, name, source, _credentials(credentials_block), query, table, reread
    )


@task(cache_policy=NO_CACHE)
def choose_suite(
    workspace: Workspace, name: str, frame: pd.DataFrame, suite: str | None, profile: dict | None = None
) -> validation.Suite:
    """SUITE, or the project's, the last run's or a generated one (versioning.choose_suite)."""
    return versioning.choose_suite(workspace, name, frame, suite, profile)


@task(cache_policy=NO_CACHE)
def validate_frame(
    frame: pd.DataFrame, suite: validation.Suite, on: str = "all rows"
) -> validation.ValidationReport:
    return validation.validate_dataset(frame, suite, on)


@task(cache_policy=NO_CACHE)
def store_suite(workspace: Workspace, suite: validation.Suite) -> Digest:
    return versioning.store_suite(workspace, suite)


@task(cache_policy=NO_CACHE)
def store_query(workspace: Workspace, query: str | None, table: str | None) -> Digest:
    """Keep the query a SQL source was read with (a table's: SELECT * FROM it) with the run."""
    text = query if query else f"SELECT * FROM {table}"
    return workspace.store.put_bytes(text.encode()).digest


@task(cache_policy=NO_CACHE)
def store_source(workspace: Workspace, source: str, credentials_block: str | None = None) -> Digest:
    """Keep the raw source bytes, so the run can be reproduced from the store alone."""
    return datasets.store_source(workspace.store, source, _credentials(credentials_block)).digest
