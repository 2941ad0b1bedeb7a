"""model-run: train a scikit-learn estimator on a dataset version, evaluate, register a model version."""

from __future__ import annotations

from typing import Any

import provenflow
from provenflow.data.features import FeatureChoice
from provenflow.flows._flow import flow
from provenflow.ledger.refs import check_name, safe_name
from provenflow.monitoring.estimation import CALIBRATION_KIND
from provenflow.tasks.model import (
    cross_validate,
    load_dataset,
    make_estimator,
    store_model,
    store_reference,
    train_model,
)
from provenflow.tasks.naming import name_run
from provenflow.tasks.workspace import open_workspace
from provenflow.ui.names import model_run_name


def _run_name() -> str:
    """``penguins-sex · RandomForest n_estimators=200 · penguins@latest`` (``@latest`` becomes the
    version once it is resolved)."""
    from prefect.runtime import flow_run

    p = flow_run.parameters
    label = p.get("name") or safe_name(f"{p['dataset'].split('@')[0]}-{p['target']}")
    return model_run_name(label, p["estimator"], p.get("params"), p["dataset"])


@flow(name="model-run", flow_run_name=_run_name)
def model_run(
    dataset: str,
    target: str,
    estimator: str,
    params: dict[str, Any] | None = None,
    seed: int = 42,
    test_size: float = 0.25,
    name: str | None = None,
    features: list[str] | None = None,
    exclude: list[str] | None = None,
    roles: dict[str, str] | None = None,
    task: str | None = None,
    register_version: bool = True,
    # Rows to train on, drawn with SEED (0: every row; None: every row up to datasets.TRAIN_SAMPLE_ROWS).
    sample: int | None = None,
    cv: int | None = None,
    trial_key: str | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
    cv_scores: dict[str, float] | None = None,
) -> dict:
    """Train ESTIMATOR (an import path, e.g. sklearn.ensemble.RandomForestClassifier) on DATASET
    (NAME@VERSION or NAME@latest) to predict TARGET; the model is registered as NAME
    (default DATASET-TARGET). SEED drives the split and any random_state not given in PARAMS.
    FEATURES names the columns to use (default: every column whose role is usable), EXCLUDE leaves
    some out, ROLES overrides column roles ({"zip": "categorical"}); TASK="classification" lets a
    classifier learn a target that looks continuous.
    With REGISTER_VERSION off (reproductions) the model is stored and linked to the run, not registered.
    CV (K) also records each metric's mean and std over K folds of the training rows; TRIAL_KEY is
    set by a sweep (provenflow.modeling.sweep.trial_key) so a re-run finds this run and reuses it;
    CV_SCORES are the CV metrics a sweep already computed for these CV folds (logged, not fitted again)."""
    params = params or {}
    workspace = open_workspace(ledger_block, store_block)
    parameters = {
        "dataset": dataset, "target": target, "estimator": estimator, "params": params,
        "seed": seed, "test_size": test_size, "name": name, "register_version": register_version,
        "features": features, "exclude": exclude, "roles": roles, "task": task,
    }  # fmt: skip
    parameters["sample"] = sample
    parameters.update({k: v for k, v in (("cv", cv), ("trial_key", trial_key)) if v is not None})
    label = name or safe_name(f"{dataset.split('@')[0]}-{target}")
    with provenflow.start(
        label, kind="model", flow="model-run", parameters=parameters, workspace=workspace
    ) as run:
        name = check_name(name or label, "model")
        version, frame, sampled = load_dataset(workspace, dataset, sample, seed)
        run.parameter("sample", sampled)  # the size used (0: every row), so a replay takes the same rows
        run.log_metrics({"sample_rows": sampled})
        run.input(version)
        if version.ref != dataset:
            name_run(model_run_name(name, estimator, params, version.ref))
        model = make_estimator(estimator, params, seed)
        choice = FeatureChoice.of(features, exclude, roles)
        trained = train_model(frame, target, model, seed, test_size, choice, version.profile, task)
        run.log_metrics(trained.metrics)
        if cv and cv_scores:  # the sweep's pool fitted these folds already: the same numbers
            run.log_metrics(cv_scores)
        elif cv:
            run.log_metrics(
                cross_validate(frame, target, model, seed, test_size, cv, choice, version.profile, task)
            )
        run.log_metrics(
            {
                "train_rows": trained.train_rows,
                "test_rows": trained.test_rows,
                "unlabelled_rows": trained.unlabelled_rows,
            }
        )
        for message in trained.warnings:
            run.warn(message)
        for message in trained.notices:
            run.warn(message, level="notice")
        output = store_model(workspace, name, trained, estimator)
        # Its held-out probabilities, to estimate its accuracy before labels arrive.
        reference = store_reference(workspace, trained, output)
        if reference:
            run.link("output", CALIBRATION_KIND, f"{name} held-out probabilities", reference)
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
        "features": [i["name"] for i in trained.signature["inputs"]],
        "warnings": run.summary.warnings,
        "prefect_url": run.prefect_url,
    }
