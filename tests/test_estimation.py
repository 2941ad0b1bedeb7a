"""Estimated performance before labels arrive (provenflow.monitoring.estimation, CBPE): what it sees, what it
cannot, and the whole path from a model run to a served model's logged predictions.

The synthetic worlds know their truth: ``covariate_world`` draws inputs, then labels from a fixed
P(y | x) whose labels get noisier as input ``a`` grows; ``prior_world`` draws the class first, then
inputs from a fixed P(x | y) (class 1 wider, so harder). The model is a gradient-boosted tree
ensemble (it fits P(y | x) closely; CBPE assumes the model's probabilities, once calibrated on the
held-out split, stay calibrated on production inputs, which a misspecified model such as a linear one
on this curved boundary does not give: there CBPE is off by up to 0.05 under the same shift).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import time
import urllib.request
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from provenflow.monitoring import estimation
from provenflow.monitoring.estimation import Reference

WINDOW = 2_000  # rows per production window
TOLERANCE = 0.03  # |estimated − realized| accuracy allowed on a window of WINDOW rows
SEEDS = (0, 1, 2)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def covariate_world(n: int, rng: np.random.Generator, shift: float = 0.0, concept: float = 0.0):
    """Inputs a, b, c, d ~ N(0, 1) (a moved by SHIFT); P(y=1 | x) fixed unless CONCEPT moves the
    boundary (the same inputs then mean other labels)."""
    x = rng.normal(size=(n, 4))
    x[:, 0] += shift
    sharpness = 3.0 * np.exp(-0.6 * x[:, 0])  # labels are noisier further along a
    logit = sharpness * (x[:, 1] + 0.5 * x[:, 2] - 0.3 * x[:, 3] ** 2 + 0.3 - concept)
    y = (rng.random(n) < _sigmoid(logit)).astype(int)
    return pd.DataFrame(x, columns=list("abcd")), y


def prior_world(n: int, rng: np.random.Generator, positive: float):
    """Class 1 with probability POSITIVE; P(x | y) fixed: class 0 ~ N(0, I), class 1 wider and moved."""
    y = (rng.random(n) < positive).astype(int)
    x = rng.normal(size=(n, 4))
    x[y == 1] = x[y == 1] * 1.8 + np.array([1.2, 0.8, 0.0, 0.0])
    return pd.DataFrame(x, columns=list("abcd")), y


@functools.cache
def fit(world, seed: int):
    """A model trained on 12,000 rows of WORLD (its training state: no shift, classes 50/50) and
    its reference, the 4,000 held-out rows; (model, reference, held-out accuracy)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(seed)
    x, y = world(16_000, rng) if world is covariate_world else world(16_000, rng, positive=0.5)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    model = HistGradientBoostingClassifier(max_iter=100, random_state=seed).fit(x_train, y_train)
    reference = estimation.reference_of(model, x_test, pd.Series(y_test), model_hash="synthetic", seed=seed)
    held_out = float((model.predict(x_test) == y_test).mean())
    return model, reference, held_out


def production(seed: int, window: int) -> np.random.Generator:
    """The random draws of one production window, the same whatever ran before."""
    return np.random.default_rng([seed, window])


def scored(model, reference: Reference, x: pd.DataFrame, y: np.ndarray) -> tuple[dict[str, float], float]:
    """(estimate, realized accuracy) of one window."""
    predicted = model.predict(x)
    return estimation.estimate(reference, model.predict_proba(x), predicted), float((predicted == y).mean())


@pytest.mark.parametrize("seed", SEEDS)
def test_the_estimate_tracks_realized_accuracy_under_covariate_shift(seed):
    """Production inputs drift to where labels are noisier (a moves by 0.75 σ, within the inputs
    the model was trained on): the realized accuracy falls, and the estimate, made without a single
    label, follows it within TOLERANCE on every window of WINDOW rows. An estimator that only
    repeated the held-out accuracy would miss by more than the fall."""
    model, reference, held_out = fit(covariate_world, seed)
    for window in range(2):
        estimate, realized = scored(
            model, reference, *covariate_world(WINDOW, production(seed, window), shift=0.75)
        )
        assert held_out - realized > TOLERANCE, "the shift must cost accuracy, or the test proves nothing"
        assert abs(estimate["accuracy"] - realized) <= TOLERANCE, (estimate, realized)
        # No label shift here: the label-shift reading agrees, so the band stays narrow.
        assert estimate["label_shift"] < 0.1
        assert estimate["accuracy_high"] - estimate["accuracy_low"] < 0.08
        assert 0.5 < estimate["roc_auc"] <= 1.0 and 0.0 < estimate["f1"] <= 1.0
    same, realized = scored(model, reference, *covariate_world(WINDOW, production(seed, 2)))
    assert abs(same["accuracy"] - realized) <= TOLERANCE  # no shift: the estimate stays put


@pytest.mark.parametrize("seed", SEEDS)
def test_a_label_shift_is_not_reported_as_stability(seed):
    """The classes' mix moves from 50 % to 95 % of the harder class (P(x | y) unchanged): the
    realized accuracy falls. Plain CBPE cannot see it: its calibration holds for the training mix,
    and the inputs of the easy-looking, wide class even push it *up*. The label-shift reading (the
    same probabilities re-weighted to the class prior EM finds for the window) follows the fall, and
    the band spans both readings: its low end falls below the held-out accuracy, so nothing the
    estimate reports says "as good as before". The reverse mix (5 %) raises the realized accuracy
    while CBPE alone reads a fall; the band covers it too."""
    from sklearn.metrics import f1_score, roc_auc_score

    model, reference, held_out = fit(prior_world, seed)
    x, y = prior_world(WINDOW, production(seed, 0), positive=0.95)
    estimate, realized = scored(model, reference, x, y)
    # F1 and ROC AUC get the same two readings and band; the realized ones fall inside it.
    assert estimate["f1_low"] <= f1_score(y, model.predict(x)) <= estimate["f1_high"]
    assert (
        estimate["roc_auc_low"] <= roc_auc_score(y, model.predict_proba(x)[:, 1]) <= estimate["roc_auc_high"]
    )
    assert held_out - realized > TOLERANCE
    assert estimate["accuracy"] - realized > TOLERANCE, "plain CBPE is blind to this shift (documented)"
    assert abs(estimate["accuracy_label_shift"] - realized) <= TOLERANCE, (estimate, realized)
    assert estimate["label_shift"] > 0.2
    assert estimate["accuracy_low"] <= realized <= estimate["accuracy_high"]
    assert estimate["accuracy_low"] < held_out - TOLERANCE
    rising, realized = scored(model, reference, *prior_world(WINDOW, production(seed, 1), positive=0.05))
    assert realized - held_out > TOLERANCE
    assert rising["accuracy_low"] <= realized <= rising["accuracy_high"]


@pytest.mark.parametrize("seed", SEEDS)
def test_concept_shift_is_invisible_to_every_estimate(seed):
    """The same inputs come to mean other labels (the boundary moves): the probabilities do not
    change, so neither estimate does, and the realized accuracy falls below the band. Only labels
    (realized performance) can show this; the test pins the limit so no one reads more into the
    estimate than it holds."""
    model, reference, held_out = fit(covariate_world, seed)
    calm, _ = scored(model, reference, *covariate_world(WINDOW, production(seed, 2)))
    estimate, realized = scored(model, reference, *covariate_world(WINDOW, production(seed, 3), concept=0.8))
    assert held_out - realized > 0.05
    assert abs(estimate["accuracy"] - calm["accuracy"]) < 0.02
    assert abs(estimate["accuracy_label_shift"] - calm["accuracy_label_shift"]) < 0.02
    assert realized < estimate["accuracy_low"]


def test_multiclass_estimate_and_reference_bytes():
    """Three classes (one-vs-rest calibration, normalised; macro F1 and ROC AUC), and the stored
    form: Parquet that reads back the same and is byte-identical for the same rows."""
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = make_classification(n_samples=9_000, n_features=6, n_informative=4, n_classes=3, random_state=4)
    labels = np.array(["low", "mid", "high"])[y]
    x_train, x_rest, y_train, y_rest = train_test_split(x, labels, test_size=0.5, random_state=4)
    x_test, x_prod, y_test, y_prod = train_test_split(x_rest, y_rest, test_size=0.5, random_state=4)
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    reference = estimation.reference_of(model, pd.DataFrame(x_test), pd.Series(y_test), model_hash="m")
    data = reference.to_bytes()
    assert data == reference.to_bytes()
    again = Reference.from_bytes(data)
    assert again.classes == ("high", "low", "mid") and again.model_hash == "m"
    assert np.array_equal(again.proba, reference.proba) and np.array_equal(again.label, reference.label)

    log = pd.DataFrame(model.predict_proba(x_prod), columns=[f"proba_{c}" for c in model.classes_])
    log["prediction"] = model.predict(x_prod)
    estimate = estimation.estimate(reference, *estimation.window_of(reference, log))
    realized = float((log["prediction"] == y_prod).mean())
    assert abs(estimate["accuracy"] - realized) <= TOLERANCE
    assert set(estimate) >= {"accuracy", "accuracy_low", "accuracy_high", "f1", "roc_auc"}
    with pytest.raises(estimation.EstimationUnavailable, match="proba_mid"):
        estimation.window_of(reference, log.drop(columns=["proba_mid"]))


def test_a_held_out_class_the_model_never_learnt_counts_as_wrong():
    """A class too rare to stratify can land only in the held-out rows: the model cannot predict it,
    so its rows are always wrong; they are kept (label -1) rather than failing the model run."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = pd.DataFrame(rng.normal(size=(400, 2)), columns=["a", "b"])
    y = np.where(x["a"] > 0, "yes", "no")
    model = LogisticRegression().fit(x, y)
    labels = pd.Series(y).where(np.arange(400) != 7, "rare")
    reference = estimation.reference_of(model, x, labels, model_hash="m")
    assert reference.label[7] == -1 and (reference.label >= 0).sum() == 399
    again = Reference.from_bytes(reference.to_bytes())
    assert np.array_equal(again.label, reference.label)
    estimate = estimation.estimate(again, model.predict_proba(x), (model.predict(x) == "yes").astype(int))
    assert 0.9 < estimate["accuracy"] <= 1.0


# -- end to end: model run → reference in the ledger → served model → logged predictions → estimate


def _serve(project, model: str, rows: pd.DataFrame) -> None:
    """Serve MODEL with ``provenflow serve``, send ROWS, stop it (SIGTERM flushes its prediction log)."""
    from tests.services import CLI, free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    server = subprocess.Popen([CLI, "serve", model, "--port", str(port)], cwd=project, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1):
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                time.sleep(0.3)
        for start in range(0, len(rows), 100):
            records = json.loads(rows.iloc[start : start + 100].to_json(orient="records"))
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/predict", data=json.dumps({"records": records}).encode(),
                headers={"content-type": "application/json"},
            )  # fmt: skip
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


@pytest.mark.usefixtures("prefect_api")
def test_model_run_records_its_reference_and_a_served_model_is_estimated(project, penguins):
    """A real model run records the held-out probabilities with the run (one more output edge, in
    its transaction); a real server logs predictions; ``estimate_for`` and ``provenflow
    performance`` estimate from them. A regressor, and a version recorded without a reference (as
    every run before this existed), say "not available"."""
    from provenflow.digest import Digest
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run
    from provenflow.ledger import models as m
    from provenflow.modeling import training
    from provenflow.serving.predictlog import read_predictions
    from provenflow.tracking.run import ModelOutput
    from provenflow.workspace import Workspace
    from tests.services import CLI

    dataset = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    trained = model_run(dataset=dataset, target="species", estimator="sklearn.linear_model.LogisticRegression",
                        params={"max_iter": 1000}, seed=3)  # fmt: skip
    regressor = model_run(
        dataset=dataset, target="body_mass_g", estimator="sklearn.linear_model.Ridge", seed=3
    )
    workspace = Workspace.default()
    with workspace.ledger.reader() as session:
        edges = session.query(m.RunIO).filter_by(run_id=trained["run_id"], kind="calibration").all()
        assert len(edges) == 1 and edges[0].direction == "output"
        assert not session.query(m.RunIO).filter_by(run_id=regressor["run_id"], kind="calibration").all()
    reference = Reference.from_bytes(workspace.store.read_bytes(Digest(edges[0].hash)))
    assert reference.model_hash == trained["model"]["hash"] and reference.classes == (
        "Adelie",
        "Chinstrap",
        "Gentoo",
    )
    assert len(reference.label) == 86  # the held-out quarter of 344 rows

    features = pd.read_csv(penguins).drop(columns=["species"])
    start = datetime.now(UTC)
    _serve(project, "penguins-species@1", features.sample(n=600, replace=True, random_state=5))
    frame, _ = read_predictions(workspace.store.url, "penguins-species", 1, since=start)
    assert len(frame) == 600 and "proba_Gentoo" in frame.columns
    estimate = estimation.estimate_for(workspace, "penguins-species@1", frame)
    assert estimate is not None and 0.8 < estimate["accuracy"] <= 1.0
    assert estimate["accuracy_low"] <= estimate["accuracy"] <= estimate["accuracy_high"]
    with workspace.ledger.reader() as session:
        row = session.query(m.ModelVersion).filter_by(name="penguins-species", version=1).one()
    assert estimation.estimate_for(workspace, row, frame) == estimate  # a ledger row works as well as a ref

    assert (
        estimation.estimate_for(workspace, f"penguins-body_mass_g@{regressor['model']['version']}", frame)
        is None
    )
    # A classifier recorded without a reference: what every model run before this feature left.
    import provenflow

    frame_all = pd.read_csv(penguins)
    with provenflow.start("old", kind="model", flow="model-run", workspace=workspace) as run:
        old = training.train_and_evaluate(frame_all, "species", training.import_estimator(
            "sklearn.tree.DecisionTreeClassifier", {}, seed=1), seed=1, test_size=0.25)  # fmt: skip
        blob = workspace.store.put_bytes(training.serialize(old.pipeline))
        run.output(ModelOutput(name="penguins-old", digest=blob.digest, size=blob.size, uri=workspace.store.uri(blob.digest),
                               format=training.MODEL_FORMAT, estimator="x", task="classification",
                               signature=old.signature, params=old.params, metrics=old.metrics))  # fmt: skip
    assert estimation.estimate_for(workspace, "penguins-old@1", frame) is None
    with pytest.raises(estimation.EstimationUnavailable, match="predates performance estimation"):
        estimation.load_reference(workspace, "penguins-old@1")

    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    shown = subprocess.run([CLI, "performance", "penguins-species@1", "--since", start.isoformat(), "--json"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["rows"] == 600 and result["estimated"] == pytest.approx(estimate)
    plain = subprocess.run([CLI, "performance", "penguins-old@1"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert plain.returncode == 0 and "not available" in plain.stdout and "Traceback" not in plain.stderr
