from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.data import datasets
from provenflow.data.features import FeatureChoice
from provenflow.digest import Digest
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_dataset
from provenflow.modeling import training
from provenflow.monitoring import estimation
from provenflow.tracking.run import ModelOutput
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def load_dataset(
    workspace: Workspace, ref: str, sample: int | None = 0, seed: int = 0
) -> tuple[m.DatasetVersion, pd.DataFrame, int]:
    """Resolve the ref and read its object, verified against the recorded hash: every row, or
    (SAMPLE rows; None: the default size for a large table) a sample seeded with SEED. Returns the
    version, the rows and the sample size used (the rows the run used are that size and SEED)."""
    with workspace.ledger.reader() as session:
        version = resolve_dataset(session, ref)
    size = datasets.sample_size(version.rows, sample) if version.rows else 0
    if not size or size >= version.rows:
        return version, datasets.load_table(workspace.store, Digest(version.hash)), 0
    return version, datasets.load_sample(workspace.store, Digest(version.hash), size, seed), size


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


@task(cache_policy=NO_CACHE)
def store_reference(
    workspace: Workspace, trained: training.TrainedModel, model: ModelOutput
) -> Digest | None:
    """A classifier's held-out probabilities, for estimating its performance before labels arrive
    (None for a model without predict_proba)."""
    if trained.reference is None:
        return None
    reference = dataclasses.replace(trained.reference, model_hash=model.digest.hex)
    return estimation.store_reference(workspace, reference)
