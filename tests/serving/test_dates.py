"""A model trained on a table with dates as text, an identifier and native categories
(HistGradientBoosting) is served over HTTP taking the raw date string (issue 10)."""

from __future__ import annotations

import io
import json

import httpx
import pandas as pd
import pytest

import provenflow
from provenflow.data import datasets
from provenflow.modeling import training
from provenflow.serving.bundle import export_bundle
from provenflow.tracking.run import DatasetOutput, ModelOutput
from provenflow.workspace import Workspace
from tests.mixed_table import mixed_table
from tests.serving.conftest import records_of, start_server

ESTIMATOR = "sklearn.ensemble.HistGradientBoostingClassifier"


@pytest.fixture(scope="module")
def dated(tmp_path_factory):
    root = tmp_path_factory.mktemp("dates-workspace")
    workspace = Workspace.open(f"sqlite:///{root}/ledger.db", str(root / "store"), fsync=False)
    frame = pd.read_csv(io.StringIO(mixed_table(rows=400, seed=3).to_csv(index=False)))
    profile = datasets.profile_of(frame)
    with provenflow.start("mixed", kind="data", flow="data-run", workspace=workspace) as run:
        stored = datasets.store_table(workspace.store, frame)
        run.output(
            DatasetOutput(
                name="mixed", digest=stored.digest, size=stored.size, uri=stored.uri, format=datasets.PARQUET,
                rows=len(frame), columns=frame.shape[1], schema=datasets.schema_of(frame), profile=profile,
            )
        )  # fmt: skip
    with provenflow.start("mixed-target", kind="model", flow="model-run", workspace=workspace) as run:
        run.input(f"mixed@{stored.digest.short}")
        estimator = training.import_estimator(ESTIMATOR, {}, seed=7)
        trained = training.train_and_evaluate(
            frame, "target", estimator, seed=7, test_size=0.25, profile=profile
        )
        blob = workspace.store.put_bytes(training.serialize(trained.pipeline))
        run.output(
            ModelOutput(
                name="mixed-target", digest=blob.digest, size=blob.size, uri=workspace.store.uri(blob.digest),
                format=training.MODEL_FORMAT, estimator=ESTIMATOR, task=trained.task,
                signature=trained.signature, params=trained.params, metrics=trained.metrics,
            )
        )  # fmt: skip
    bundle = root / "bundle"
    meta = export_bundle(workspace, "mixed-target@1", bundle)
    server = start_server(bundle, str(root / "log"))
    yield frame, trained, meta, server
    server.stop()


def test_the_model_uses_native_categories_and_date_features(dated):
    _, trained, _, _ = dated
    model = trained.pipeline.named_steps["model"]
    assert model.categorical_features == [0, 1]  # colour and member, as ordinal codes
    assert [(i["name"], i["kind"]) for i in trained.signature["inputs"]] == [
        ("date", "datetime"), ("x1", "numeric"), ("x2", "numeric"), ("colour", "categorical"),
        ("member", "categorical"),
    ]  # fmt: skip
    assert trained.signature["inputs"][0]["format"] == "%Y/%m/%d"


def test_the_release_says_why_scikit_learn_serves(dated):
    _, _, meta, server = dated
    assert meta.onnx is None and "DateFeatures" in meta.onnx_reason
    described = httpx.get(f"{server.url}/metadata", timeout=10).json()
    assert described["runtime"] == "sklearn" and "DateFeatures" in described["runtime_reason"]


def test_served_predictions_take_the_raw_date_string(dated):
    frame, trained, _, server = dated
    names = [i["name"] for i in trained.signature["inputs"]]
    rows = frame.head(40)
    response = httpx.post(f"{server.url}/predict", json={"records": records_of(rows, names)}, timeout=30)
    assert response.status_code == 200, response.text
    assert isinstance(rows["date"].dropna().iloc[0], str)
    assert response.json()["predictions"] == trained.pipeline.predict(rows[names]).tolist()


def test_a_value_that_is_not_a_date_is_refused_by_name(dated):
    frame, trained, _, server = dated
    names = [i["name"] for i in trained.signature["inputs"]]
    record = records_of(frame.head(1), names)[0]
    record["date"] = "next tuesday"
    response = httpx.post(f"{server.url}/predict", json={"records": [record]}, timeout=30)
    assert response.status_code == 422
    problem = response.json()["problems"][0]
    assert problem["field"] == "date" and "date string written %Y/%m/%d" in problem["message"]
    assert json.dumps(problem).count("next tuesday") == 1


def test_an_iso_8601_date_means_the_same_day_as_the_training_format(dated):
    frame, trained, _, server = dated
    names = [i["name"] for i in trained.signature["inputs"]]
    rows = frame.dropna(subset=["date"]).head(20)
    records = records_of(rows, names)
    iso = [{**r, "date": r["date"].replace("/", "-")} for r in records]
    answers = [
        httpx.post(f"{server.url}/predict", json={"records": body}, timeout=30) for body in (records, iso)
    ]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert answers[1].json()["predictions"] == answers[0].json()["predictions"]
    assert answers[1].json()["probabilities"] == answers[0].json()["probabilities"]
