from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow import datasets, training
from provenflow.digest import Digest
from provenflow.features import FeatureChoice
from provenflow.ledger import models as m
from provenflow.refs import resolve_dataset
from provenflow.tracking import ModelOutput
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def load_dataset(workspace: Workspace, ref: str) -> tuple[m.DatasetVersion, pd.DataFrame]:
    """Resolve the ref and read its object, verified against the recorded hash."""
    with workspace.ledger.reader() as session:
        version = resolve_dataset(session, ref)
    return version, datasets.load_table(workspace.store, Digest(version.hash))


@task(cache_policy=NO_CACHE)
def make_estimator(path: str, params: dict[str, Any], seed: int | None) -> Any:
    return training.import_estimator(path, params, seed)


@task(cache_policy=NO_CACHE)
def train_model(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    seed: int,
    test_size: float,
    choice: FeatureChoice,
    profile: dict | None,
    task: str | None,
) -> training.TrainedModel:
    return training.train_and_evaluate(frame, target, estimator, seed, test_size, choice, profile, task)


@task(cache_policy=NO_CACHE)
def cross_validate(
    frame: pd.DataFrame,
    target: str,
    estimator: Any,
    seed: int,
    test_size: float,
    folds: int,
    choice: FeatureChoice,
    profile: dict | None,
    task: str | None,
) -> dict[str, float]:
    return training.cross_validate(frame, target, estimator, seed, test_size, folds, choice, profile, task)


@task(cache_policy=NO_CACHE)
def store_model(
    workspace: Workspace, name: str, trained: training.TrainedModel, estimator: str
) -> ModelOutput:
    stored = workspace.store.put_bytes(training.serialize(trained.pipeline))
    return ModelOutput(
        name=name,
        digest=stored.digest,
        size=stored.size,
        uri=workspace.store.uri(stored.digest),
        format=training.MODEL_FORMAT,
        estimator=estimator,
        task=trained.task,
        signature=trained.signature,
        params=trained.params,
        metrics=trained.metrics,
    )
