from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow import datasets, validation
from provenflow.digest import Digest
from provenflow.project import project_root
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
def store_dataset(
    workspace: Workspace, name: str, frame: pd.DataFrame, source: str
) -> tuple[DatasetOutput, bool]:
    """Write the canonical Parquet object; returns the pending version and whether the object is new."""
    stored = datasets.store_table(workspace.store, frame)
    output = DatasetOutput(
        name=name,
        digest=stored.digest,
        size=stored.size,
        uri=stored.uri,
        format=datasets.PARQUET,
        rows=len(frame),
        columns=frame.shape[1],
        schema=datasets.schema_of(frame),
        profile=datasets.profile_of(frame),
        source=source,
    )
    return output, stored.created


@task(cache_policy=NO_CACHE)
def store_source(workspace: Workspace, source: str) -> tuple[Digest, bool]:
    """Keep the raw source bytes, so the run can be reproduced from the store alone."""
    stored = datasets.store_source(workspace.store, source)
    return stored.digest, stored.created
