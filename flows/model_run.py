"""model-run: train a scikit-learn estimator on a dataset version, evaluate, register a model version."""

from __future__ import annotations

from typing import Any

import provenflow
from flows._flow import flow
from provenflow.refs import check_name, safe_name
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
    register_version: bool = True,
    # Rows to train on, drawn with SEED (0: every row; None: every row up to datasets.TRAIN_SAMPLE_ROWS).
    sample: int | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Train ESTIMATOR (an import path, e.g. sklearn.ensemble.RandomForestClassifier) on DATASET
    (NAME@VERSION or NAME@latest) to predict TARGET; the model is registered as NAME
    (default DATASET-TARGET). SEED drives the split and any random_state not given in PARAMS.
    With REGISTER_VERSION off (reproductions) the model is stored and linked to the run, not registered."""
    params = params or {}
    workspace = open_workspace(ledger_block, store_block)
    parameters = {
        "dataset": dataset, "target": target, "estimator": estimator, "params": params,
        "seed": seed, "test_size": test_size, "name": name, "register_version": register_version,
    }  # fmt: skip
    parameters["sample"] = sample
    label = name or safe_name(f"{dataset.split('@')[0]}-{target}")
    with provenflow.start(
        label, kind="model", flow="model-run", parameters=parameters, workspace=workspace
    ) as run:
        name = check_name(name or label, "model")
        version, frame, sampled = load_dataset(workspace, dataset, sample, seed)
        run.parameter("sample", sampled)  # the size used (0: every row), so a replay takes the same rows
        run.log_metrics({"sample_rows": sampled})
        run.input(version)
        model = make_estimator(estimator, params, seed)
        trained = train_model(frame, target, model, seed, test_size)
        run.log_metrics(trained.metrics)
        run.log_metrics({"train_rows": trained.train_rows, "test_rows": trained.test_rows})
        output = store_model(workspace, name, trained, estimator)
        if register_version:
            run.output(output)
        else:
            run.link("output", "model", f"{name} (not registered)", output.digest)
    registered = [o["name"] for o in run.summary.outputs if o["kind"] == "model" and "@" in o["name"]]
    return {
        "run_id": run.id,
        "model": {
            "name": name,
            "version": int(registered[0].rsplit("@", 1)[1]) if registered else None,
            "hash": output.digest.hex,
        },
        "dataset": version.ref,
        "metrics": trained.metrics,
        "params": trained.params,
        "prefect_url": run.prefect_url,
    }
