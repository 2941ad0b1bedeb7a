"""The data-run and model-run flows against a real Prefect server, including every bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from provenflow.digest import Digest
from provenflow.errors import DataError, IntegrityError, RefError, TrainingError, ValidationFailed
from provenflow.ledger import models as m
from provenflow.workspace import Workspace

pytestmark = pytest.mark.usefixtures("prefect_api")


def _flows():
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run

    return data_run, model_run


def _objects(project: Path) -> set[str]:
    return {p.name for p in (project / ".provenflow" / "store").rglob("*") if p.is_file()}


def _counts() -> dict[str, int]:
    with Workspace.default().ledger.reader() as s:
        return {
            t.__name__: s.scalar(select(func.count()).select_from(t))
            for t in (m.DatasetVersion, m.ModelVersion)
        }


def _last_run() -> dict:
    with Workspace.default().ledger.reader() as s:
        run = s.scalars(select(m.Run).order_by(m.Run.started_at.desc())).first()
        return {
            "state": run.state,
            "error": run.error,
            "outputs": [io.name for io in run.io if io.direction == "output"],
        }


def _prefect_artifacts(flow_run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def test_data_run_then_model_run_end_to_end(project, penguins):
    data_run, model_run = _flows()
    first = data_run(name="penguins", source=str(penguins))
    ref = first["dataset"]["ref"]
    assert first["dataset"]["rows"] == 344 and first["dataset"]["new"] is True
    assert ref == f"penguins@{first['dataset']['hash'][:12]}"
    assert first["validation"]["created_suite"] and not (project / "expectations").exists()
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # before: "data-penguins", every data run alike
        assert client.read_flow_run(first["run_id"]).name == f"penguins · {penguins.name} · @{ref[-12:][:6]}"

    objects = _objects(project)
    again = data_run(name="penguins", source=str(penguins))
    assert again["dataset"]["ref"] == ref and again["dataset"]["new"] is False
    assert _objects(project) == objects  # identical content: no new object
    assert _counts()["DatasetVersion"] == 1

    result = model_run(dataset="penguins@latest", target="species", estimator="sklearn.ensemble.RandomForestClassifier",
                       params={"n_estimators": 25}, seed=5)  # fmt: skip
    assert result["model"] == {"name": "penguins-species", "version": 1, "hash": result["model"]["hash"]}
    assert result["dataset"] == ref
    assert result["metrics"]["accuracy"] > 0.9
    assert result["params"]["n_estimators"] == 25

    with Workspace.default().ledger.reader() as s:
        run = s.get(m.Run, result["run_id"])
        assert run.state == "completed" and run.prefect_flow_run_id == run.id
        assert run.prefect_url.endswith(run.id)
        assert run.parameters["params"] == {"n_estimators": 25}
        assert [(io.direction, io.kind, io.name) for io in run.io] == [
            ("input", "dataset", ref), ("output", "calibration", "penguins-species held-out probabilities"),
            ("output", "model", "penguins-species@1")]  # fmt: skip
        model = s.scalars(select(m.ModelVersion)).one()
        assert model.hash == result["model"]["hash"]
        assert Digest.of_bytes(Workspace.default().store.read_bytes(Digest(model.hash))).hex == model.hash

    artifacts = _prefect_artifacts(result["run_id"])
    keys = {a.key for a in artifacts}
    assert {"leaderboard-penguins-species", "model-penguins-species"} <= keys
    card = next(a for a in artifacts if a.type == "markdown" and a.key is None)
    assert ref in card.data and "accuracy" in card.data and "Environment" in card.data
    table = next(a for a in artifacts if a.key == "leaderboard-penguins-species")
    row = json.loads(table.data)[0] if isinstance(table.data, str) else table.data[0]
    assert row["version"] == "1" and row["accuracy"] == pytest.approx(result["metrics"]["accuracy"])
    assert row["parameters"] == "RandomForest n_estimators=25" and row["link"] == result["prefect_url"]
    # Other kinds keep their table under one key per model, not one per "@alias" (those had a hash).
    assert not [
        a.key for a in _prefect_artifacts(first["run_id"]) if a.key and a.key != "metrics-data-penguins"
    ]


def _assert_failed_cleanly(project: Path, objects_before: set[str], counts_before: dict, message: str):
    run = _last_run()
    assert run["state"] == "failed" and message in run["error"]
    assert _counts() == counts_before
    assert _objects(project) == objects_before
    assert run["outputs"] == []


@pytest.mark.parametrize(
    ("write", "error", "message"),
    [
        (None, DataError, "no file at"),
        (b"", DataError, "is empty"),
        (b"a,b\n1,2\n3,4,5,6\n", DataError, "could not be parsed as CSV"),
    ],
    ids=["missing", "empty", "unparsable"],
)
def test_data_run_bad_sources(project, write, error, message):
    data_run, _ = _flows()
    source = project / "input.csv"
    if write is not None:
        source.write_bytes(write)
    before, counts = _objects(project), _counts()
    with pytest.raises(error, match=message):
        data_run(name="broken", source=str(source))
    _assert_failed_cleanly(project, before, counts, message)


def test_data_run_type_change_and_failing_expectation(project, penguins):
    data_run, _ = _flows()
    data_run(name="penguins", source=str(penguins))
    before, counts = _objects(project), _counts()

    changed = project / "changed.csv"
    changed.write_text(
        penguins.read_text().replace("Adelie,Torgersen,39.1,", "Adelie,Torgersen,thirty-nine,")
    )
    with pytest.raises(ValidationFailed, match="expect_column_values_to_be_in_type_list on 'bill_length_mm'"):
        data_run(name="penguins", source=str(changed))
    _assert_failed_cleanly(project, before, counts, "bill_length_mm")

    suite = project / "strict.json"
    suite.write_text(json.dumps({"name": "strict", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "sex"}},
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "island", "value_set": ["Biscoe", "Dream"]}},
    ]}))  # fmt: skip
    with pytest.raises(ValidationFailed) as info:
        data_run(name="penguins", source=str(penguins), suite=str(suite))
    assert "expect_column_values_to_not_be_null on 'sex'" in str(info.value)
    assert "expect_column_values_to_be_in_set on 'island'" in str(info.value)
    _assert_failed_cleanly(project, before, counts, "2 of 2 expectations")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dataset": "pengiuns@latest"}, RefError, "no dataset named 'pengiuns'. Did you mean 'penguins'"),
        ({"dataset": "penguins@abcdef"}, RefError, "no dataset version 'penguins@abcdef'"),
        ({"target": "specis"}, TrainingError, "target column 'specis' is not in the dataset"),
        (
            {"estimator": "sklearn.ensemble.NoSuchForest"},
            TrainingError,
            "module 'sklearn.ensemble' has no 'NoSuchForest'",
        ),
        ({"estimator": "sklearn.utils.Bunch"}, TrainingError, "not a scikit-learn estimator"),
        ({"estimator": "json.JSONDecoder"}, TrainingError, "not in the allowed estimator modules"),
        ({"target": "body_mass_g"}, TrainingError, "target 'body_mass_g' looks continuous"),
        ({"estimator": "sklearn.linear_model.Ridge"}, TrainingError, "target 'species' is not numeric"),
        ({"params": {"max_depth": -4}}, TrainingError, "rejected its hyper-parameters"),
        ({"params": {"depth": 4}}, TrainingError, "no hyper-parameter 'depth'"),
    ],
    ids=[
        "unknown-dataset",
        "unknown-version",
        "unknown-target",
        "no-import",
        "not-estimator",
        "not-allowed",
        "continuous-target",
        "text-target",
        "bad-value",
        "bad-name",
    ],
)
def test_model_run_bad_input(project, penguins, kwargs, error, message):
    data_run, model_run = _flows()
    data_run(name="penguins", source=str(penguins))
    before, counts = _objects(project), _counts()
    args = {
        "dataset": "penguins@latest",
        "target": "species",
        "estimator": "sklearn.tree.DecisionTreeClassifier",
    } | kwargs
    with pytest.raises(error, match=message):
        model_run(**args)
    _assert_failed_cleanly(project, before, counts, message.split(".")[0])


def test_model_run_refuses_a_tampered_dataset_object(project, penguins):
    data_run, model_run = _flows()
    result = data_run(name="penguins", source=str(penguins))
    store = Workspace.default().store
    path = store.path(Digest(result["dataset"]["hash"]))
    os.chmod(path, 0o644)
    Path(path).write_bytes(Path(path).read_bytes()[:-10] + b"0123456789")
    before, counts = _objects(project), _counts()
    with pytest.raises(IntegrityError, match=f"store object {result['dataset']['hash']}.*corrupt"):
        model_run(
            dataset=result["dataset"]["ref"],
            target="species",
            estimator="sklearn.tree.DecisionTreeClassifier",
        )
    _assert_failed_cleanly(project, before, counts, "corrupt")


def test_ledger_on_postgres_by_url(project, penguins, postgres, monkeypatch):
    from provenflow.settings import get_settings

    monkeypatch.setenv("PROVENFLOW_LEDGER_URL", postgres.create_database("flows_ledger"))
    get_settings.cache_clear()
    data_run, model_run = _flows()
    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    result = model_run(dataset=ref, target="body_mass_g", estimator="sklearn.linear_model.Ridge")
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}
    assert Workspace.default().ledger.engine.dialect.name == "postgresql"
    with Workspace.default().ledger.reader() as s:
        assert s.scalars(select(m.ModelVersion.name)).all() == ["penguins-body_mass_g"]


def test_tracking_api_inside_a_users_own_flow_and_task(project):
    from prefect import flow, task

    import provenflow as pf

    (project / "params.yaml").write_text("alpha: 0.3\n")

    @task
    def evaluate(alpha: float) -> float:
        pf.metric("score", 1 - alpha)  # the active run is visible inside tasks
        return 1 - alpha

    @flow(name="my-experiment")
    def my_experiment(alpha: float = 0.3) -> str:
        with pf.start("my-experiment", parameters={"alpha": alpha}) as run:
            pf.input("params.yaml")
            evaluate(alpha)
        return run.id

    run_id = my_experiment()
    with Workspace.default().ledger.reader() as s:
        run = s.get(m.Run, run_id)
        assert run.prefect_flow_run_id == run_id and run.flow == "my-experiment"
        assert {mt.key: mt.value for mt in run.metrics} == {"score": 0.7}
        assert [io.name for io in run.io] == ["params.yaml"]
    assert "metrics-custom-my-experiment" in {a.key for a in _prefect_artifacts(run_id)}


def test_several_runs_in_one_flow_run_keep_their_own_records(project):
    from prefect import flow

    import provenflow as pf

    @flow(name="sweep-in-one-flow")
    def sweep() -> list[str]:
        ids = []
        for alpha in (0.1, 0.2, 0.3):
            with pf.start(f"exp-{alpha}", parameters={"alpha": alpha}) as run:
                pf.metric("score", alpha)
            ids.append(run.id)
        return ids

    ids = sweep()
    assert len(set(ids)) == 3
    with Workspace.default().ledger.reader() as s:
        names = sorted(s.get(m.Run, i).name for i in ids)
    assert names == ["exp-0.1", "exp-0.2", "exp-0.3"]


def test_bad_names_fail_as_recorded_runs(project, penguins):
    data_run, model_run = _flows()
    with pytest.raises(RefError, match=r"dataset name '../escape' is not allowed"):
        data_run(name="../escape", source=str(penguins))
    assert not (project.parent / "escape.json").exists()
    assert _last_run()["state"] == "failed"
    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    spaced = project / "spaced.csv"
    spaced.write_text(penguins.read_text().replace("body_mass_g", "body mass", 1))
    spaced_ref = data_run(name="spaced", source=str(spaced))["dataset"]["ref"]
    result = model_run(dataset=spaced_ref, target="body mass", estimator="sklearn.linear_model.Ridge")
    assert result["model"]["name"] == "spaced-body-mass"
    assert ref.startswith("penguins@")


def test_parquet_index_and_odd_columns_survive(project):
    import pandas as pd

    data_run, _ = _flows()
    frame = pd.DataFrame({"id": [10, 11, 12], "value": [1.5, float("inf"), 2.5], "flag": [True, None, False]})
    frame.set_index("id").to_parquet(project / "indexed.parquet")
    result = data_run(name="indexed", source=str(project / "indexed.parquet"))
    assert result["dataset"]["columns"] == 3
    with Workspace.default().ledger.reader() as s:
        profile = s.scalars(select(m.DatasetVersion)).one().profile
    assert profile["columns"]["value"]["infinite"] == 1 and profile["columns"]["value"]["max"] is None
    (project / "flags.csv").write_text("a,flag\n1,True\n2,False\n3,\n4,True\n")
    assert data_run(name="flags", source=str(project / "flags.csv"))["validation"]["success"]


def test_model_run_on_a_seeded_sample_records_the_rows_it_used(project, penguins, monkeypatch):
    from provenflow.data import datasets

    data_run, model_run = _flows()
    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    args = {"dataset": ref, "target": "species", "estimator": "sklearn.linear_model.LogisticRegression"}
    sampled = model_run(**args, sample=120, name="sampled")
    again = model_run(**args, sample=120, name="sampled")
    assert sampled["model"]["hash"] == again["model"]["hash"]  # same seed and size: the same rows
    with Workspace.default().ledger.reader() as s:
        run = s.get(m.Run, sampled["run_id"])
        assert run.parameters["sample"] == 120
        metrics = {x.key: x.value for x in run.metrics}
    assert metrics["sample_rows"] == 120 and metrics["train_rows"] + metrics["test_rows"] == 120
    # A dataset larger than the default sample trains on that many rows unless told otherwise.
    monkeypatch.setattr(datasets, "TRAIN_SAMPLE_ROWS", 200)
    default = model_run(**args, name="default-sample")
    whole = model_run(**args, sample=0, name="whole")
    with Workspace.default().ledger.reader() as s:
        assert s.get(m.Run, default["run_id"]).parameters["sample"] == 200
        assert s.get(m.Run, whole["run_id"]).parameters["sample"] == 0
