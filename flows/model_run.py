"""model-run: train a scikit-learn estimator on a dataset version, evaluate, register a model version."""

from __future__ import annotations

from typing import Any

from prefect import flow

import provenflow
from provenflow.refs import split_ref
from tasks.model import load_dataset, make_estimator, store_model, train_model
from tasks.workspace import open_workspace


@flow(name="model-run", flow_run_name="model-{estimator}")
def model_run(
    dataset: str,
    target: str,
    estimator: str,
    params: dict[str, Any] | None = None,
    seed: int = 42,
    test_size: float = 0.25,
    name: str | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Train ESTIMATOR (an import path, e.g. sklearn.ensemble.RandomForestClassifier) on DATASET
    (NAME@VERSION or NAME@latest) to predict TARGET; the model is registered as NAME
    (default DATASET-TARGET)."""
    params = params or {}
    name = name or f"{split_ref(dataset, 'dataset')[0]}-{target}"
    workspace = open_workspace(ledger_block, store_block)
    parameters = {
        "dataset": dataset, "target": target, "estimator": estimator, "params": params,
        "seed": seed, "test_size": test_size, "name": name,
    }  # fmt: skip
    with provenflow.start(
        name, kind="model", flow="model-run", parameters=parameters, workspace=workspace
    ) as run:
        version, frame = load_dataset(workspace, dataset)
        run.input(version)
        model = make_estimator(estimator, params)
        trained = train_model(frame, target, model, seed, test_size)
        run.log_metrics(trained.metrics)
        run.log_metrics({"train_rows": trained.train_rows, "test_rows": trained.test_rows})
        output, created = store_model(workspace, name, trained, estimator)
        if created:
            run.created_object(output.digest)
        run.output(output)
    registered = next(o for o in run.summary.outputs if o["kind"] == "model")
    return {
        "run_id": run.id,
        "model": {
            "name": name,
            "version": int(registered["name"].rsplit("@", 1)[1]),
            "hash": output.digest.hex,
        },
        "dataset": version.ref,
        "metrics": trained.metrics,
        "params": trained.params,
        "prefect_url": run.prefect_url,
    }
