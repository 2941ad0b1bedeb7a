from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow import datasets, validation
from provenflow.credentials import Credentials
from provenflow.digest import Digest
from provenflow.project import project_root
from provenflow.redact import redact
from provenflow.tracking import DatasetOutput
from provenflow.workspace import Workspace


def _credentials(block: str | None) -> Credentials | None:
    if not block:
        return None
    from blocks.credentials import load_credentials

    return load_credentials(block)


@task(cache_policy=NO_CACHE)
def read_source(source: str, credentials_block: str | None = None) -> pd.DataFrame:
    """The source as a table, read with the credentials in CREDENTIALS_BLOCK (a Secret block), if any."""
    return datasets.read_table(source, _credentials(credentials_block))


@task(cache_policy=NO_CACHE)
def validate_frame(name: str, frame: pd.DataFrame, suite: str | None) -> validation.ValidationReport:
    """Validate against the given suite, or expectations/NAME.json (generated from the first good data)."""
    if suite:
        return validation.validate_dataset(name, frame, Path(suite), create_if_missing=False)
    return validation.validate_dataset(
        name, frame, project_root() / "expectations" / f"{name}.json", create_if_missing=True
    )


@task(cache_policy=NO_CACHE)
def store_dataset(workspace: Workspace, name: str, frame: pd.DataFrame, source: str) -> DatasetOutput:
    """Describe the table, then write its canonical Parquet object (the pending dataset version)."""
    schema, profile = datasets.schema_of(frame), datasets.profile_of(frame)
    stored = datasets.store_table(workspace.store, frame)
    return DatasetOutput(
        name=name,
        digest=stored.digest,
        size=stored.size,
        uri=stored.uri,
        format=datasets.PARQUET,
        rows=len(frame),
        columns=frame.shape[1],
        schema=schema,
        profile=profile,
        source=redact(source),
    )


@task(cache_policy=NO_CACHE)
def store_source(workspace: Workspace, source: str, credentials_block: str | None = None) -> Digest:
    """Keep the raw source bytes, so the run can be reproduced from the store alone."""
    return datasets.store_source(workspace.store, source, _credentials(credentials_block)).digest
