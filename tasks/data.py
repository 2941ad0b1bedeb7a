from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow import datasets, validation
from provenflow.digest import Digest
from provenflow.project import project_root
from provenflow.redact import redact
from provenflow.tracking import DatasetOutput
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def read_source(source: str) -> pd.DataFrame:
    return datasets.read_table(source)


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
        repaired=stored.repaired,
        rows=len(frame),
        columns=frame.shape[1],
        schema=schema,
        profile=profile,
        source=redact(source),
    )


@task(cache_policy=NO_CACHE)
def store_source(workspace: Workspace, source: str) -> Digest:
    """Keep the raw source bytes, so the run can be reproduced from the store alone."""
    return datasets.store_source(workspace.store, source).digest
