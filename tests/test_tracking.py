"""The tracking API and the ledger, on SQLite and on PostgreSQL."""

import json

import pytest
from sqlalchemy import func, select

import provenflow as pf
from provenflow.digest import Digest
from provenflow.errors import ProvenflowError, RefError
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_any, resolve_dataset, resolve_model, resolve_run
from provenflow.tracking import catalog
from provenflow.tracking.entry import notebook_cells_hash
from provenflow.tracking.lineage import lineage
from provenflow.tracking.run import DatasetOutput, ModelOutput


def _count(ws, table) -> int:
    with ws.ledger.reader() as s:
        return s.scalar(select(func.count()).select_from(table))


def _dataset(ws, name: str, payload: bytes) -> DatasetOutput:
    stored = ws.store.put_bytes(payload)
    return DatasetOutput(
        name=name,
        digest=stored.digest,
        size=stored.size,
        uri=ws.store.uri(stored.digest),
        format="parquet",
        rows=3,
        columns=2,
    )


def _model(ws, name: str, payload: bytes) -> ModelOutput:
    stored = ws.store.put_bytes(payload)
    return ModelOutput(
        name=name,
        digest=stored.digest,
        size=stored.size,
        uri=ws.store.uri(stored.digest),
        format="test",
        metrics={"f1": 0.5},
    )


def test_run_records_everything_in_one_go(workspace, tmp_path):
    files = []
    for i in range(10):
        f = tmp_path / f"in{i}.txt"
        f.write_text(f"input {i}")
        files.append(f)
    with pf.start("exp", parameters={"lr": 0.1, "layers": [3, 4]}, workspace=workspace) as run:
        for f in files:
            pf.input(f)
        for step in range(1000):
            pf.metric("loss", 1.0 / (step + 1), step=step)
        pf.metric("accuracy", 0.93)
        run.output(_dataset(workspace, "features", b"dataset bytes"))
    summary = run.summary
    assert summary.state == "completed"
    assert summary.metrics == {"loss": 0.001, "accuracy": 0.93}
    assert len(summary.inputs) == 10 and summary.outputs[0]["name"].startswith("features@")
    assert summary.environment["packages"] > 10 and summary.environment["python"]
    with workspace.ledger.reader() as s:
        row = resolve_run(s, run.id[:8])
        assert resolve_run(s, summary.outputs[0]["name"]).id == run.id  # the run that made features@…
        assert row.parameters == {"lr": 0.1, "layers": [3, 4]}
        assert len(row.metrics) == 1001
        assert row.user and row.host and row.ended_at >= row.started_at
        assert any(p.startswith("sqlalchemy==") for p in row.environment.packages)
        shown = catalog.run_dict(row, full=True)
        assert len(shown["metric_history"]["loss"]) == 1000
    # Every input file is in the store, verified by its hash.
    for edge in summary.inputs:
        assert workspace.store.verify(Digest(edge["hash"]))


def test_failed_run_keeps_a_record_but_no_outputs_and_no_orphans(workspace):
    with pytest.raises(RuntimeError, match="boom"), pf.start("doomed", workspace=workspace) as run:
        dataset = run.output(_dataset(workspace, "half", b"half-written"))
        run.output(_model(workspace, "m", b"model bytes"))
        pf.metric("partial", 1.0)
        raise RuntimeError("boom")
    assert _count(workspace, m.DatasetVersion) == 0
    assert _count(workspace, m.ModelVersion) == 0
    assert not workspace.store.exists(dataset.digest)
    with workspace.ledger.reader() as s:
        row = resolve_run(s, run.id)
        assert row.state == "failed" and "boom" in row.error
        assert [io for io in row.io if io.direction == "output"] == []


def test_identical_dataset_content_is_one_version(workspace):
    refs = []
    for _ in range(2):
        with pf.start("ingest", kind="data", workspace=workspace) as run:
            run.output(_dataset(workspace, "iris", b"same content"))
        refs.append(run.summary.outputs[0]["name"])
    assert refs[0] == refs[1]
    assert _count(workspace, m.DatasetVersion) == 1


def test_model_versions_number_up_and_resolve(workspace):
    for payload in (b"m1", b"m2"):
        with pf.start("train", kind="model", workspace=workspace) as run:
            run.output(_model(workspace, "churn", payload))
    with workspace.ledger.reader() as s:
        assert resolve_model(s, "churn@latest").version == 2
        assert resolve_model(s, "churn@1").hash == Digest.of_bytes(b"m1").hex
        with pytest.raises(
            RefError, match="no model version 'churn@7'; recent versions of 'churn': churn@2, churn@1"
        ):
            resolve_model(s, "churn@7")
        with pytest.raises(RefError, match="Did you mean 'churn'"):
            resolve_model(s, "chrun@1")
        with pytest.raises(RefError, match="not a model reference"):
            resolve_model(s, "churn")


def test_unknown_refs_are_clear(workspace):
    with workspace.ledger.reader() as s:
        with pytest.raises(RefError, match="no dataset named 'nope'"):
            resolve_dataset(s, "nope@latest")
        with pytest.raises(RefError, match="no run with id"):
            resolve_run(s, "0123456789")
        with pytest.raises(RefError, match="no dataset or model named"):
            resolve_any(s, "ghost@1")


def test_lineage_walks_both_ways(workspace):
    with pf.start("ingest", kind="data", workspace=workspace) as data_run:
        data_run.output(_dataset(workspace, "sales", b"sales v1"))
    dataset_ref = data_run.summary.outputs[0]["name"]
    with pf.start("train", kind="model", workspace=workspace) as model_run:
        pf.input(dataset_ref)
        model_run.output(_model(workspace, "forecast", b"weights"))
    with workspace.ledger.reader() as s:
        down = lineage(s, dataset_ref)
        assert down["downstream"][0]["id"] == model_run.id
        assert down["downstream"][0]["outputs"][0]["ref"] == "forecast@1"
        up = lineage(s, "forecast@1")
        producer = up["upstream"][0]
        assert producer["id"] == model_run.id
        assert producer["inputs"][0]["ref"] == dataset_ref
        assert producer["inputs"][0]["produced_by"][0]["id"] == data_run.id
        assert producer["environment"]["hash"]
        run_graph = lineage(s, model_run.id)
        assert run_graph["upstream"][0]["ref"] == dataset_ref


def test_compare_lines_up_params_and_metrics(workspace):
    ids = []
    for lr in (0.1, 0.01):
        with pf.start("sweep", parameters={"lr": lr, "opt": {"name": "adam"}}, workspace=workspace) as run:
            pf.metric("auc", lr * 5)
        ids.append(run.id)
    with workspace.ledger.reader() as s:
        table = catalog.compare_runs(s, ids)
    assert table["params"]["lr"] == [0.1, 0.01]
    assert table["params"]["opt.name"] == ["adam", "adam"]
    assert table["metrics"]["auc"] == [0.5, 0.05]


def test_non_finite_metric_is_refused(workspace):
    with pf.start("x", workspace=workspace) as run, pytest.raises(ProvenflowError, match="finite"):
        run.metric("loss", float("nan"))


def test_fluent_api_needs_an_active_run():
    with pytest.raises(ProvenflowError, match="no active provenflow run"):
        pf.metric("x", 1.0)


def test_notebook_code_identity(workspace, tmp_path, monkeypatch):
    notebook = tmp_path / "analysis.ipynb"
    cell = {"cell_type": "code", "source": ["x = 1\n", "x"], "outputs": [], "metadata": {}}
    notebook.write_text(json.dumps({"cells": [cell]}))
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))
    pf.start("notebook-run", workspace=workspace)
    pf.metric("r2", 0.8)
    summary = pf.end()
    assert summary.code["file"].endswith("analysis.ipynb")
    # The code identity is the code cells' source: outputs change it not, a changed line does.
    first = summary.code["file_hash"]
    notebook.write_text(json.dumps({"cells": [{**cell, "outputs": [{"output_type": "stream", "text": "1"}]}]}))
    assert notebook_cells_hash(notebook) == first
    notebook.write_text(json.dumps({"cells": [{**cell, "source": "x = 2"}]}))
    assert notebook_cells_hash(notebook) != first


def test_parameters_are_json_safe_and_free_of_credentials(workspace):
    import numpy as np

    params = {
        "alpha": float("inf"),
        "w": np.array([1, 2]),
        "n": np.int64(3),
        "source": "s3://AKIA:secretkey@bucket/data.csv",
        "url": "https://token123@example.com/x.csv",
    }
    with pf.start("safe", parameters=params, workspace=workspace) as run:
        pf.metric("m", 1.0)
    with workspace.ledger.reader() as s:
        recorded = resolve_run(s, run.id).parameters
    assert recorded == {
        "alpha": "inf",
        "w": [1, 2],
        "n": 3,
        "source": "s3://***@bucket/data.csv",
        "url": "https://***@example.com/x.csv",
    }


def test_a_run_that_cannot_be_recorded_leaves_no_objects(workspace):
    ghost = m.DatasetVersion(id=987654, name="ghost", hash="0" * 64, version="0" * 12)
    with pytest.raises(Exception), pf.start("unrecordable", workspace=workspace) as run:  # noqa: B017
        run.input(ghost)  # an edge to a row that does not exist: the ledger refuses the record
        output = run.output(_dataset(workspace, "never", b"orphan candidate"))
    assert not workspace.store.exists(output.digest)
    assert _count(workspace, m.DatasetVersion) == 0


def test_a_failed_run_keeps_objects_another_run_recorded(workspace):
    """Two runs store the same new content at once; the one that fails must not delete it."""
    doomed = pf.start("doomed", workspace=workspace)
    shared = _dataset(workspace, "shared", b"same bytes, stored first by the doomed run")
    with pf.start("lucky", kind="data", workspace=workspace) as lucky:
        lucky.output(_dataset(workspace, "shared", b"same bytes, stored first by the doomed run"))
    doomed._token = None  # ended out of order on purpose
    doomed.end(RuntimeError("late failure"))
    assert workspace.store.exists(shared.digest)


def test_latest_follows_the_newest_run_not_the_newest_row(workspace):
    first, second = b"version one", b"version two"
    for payload in (first, second, first):
        with pf.start("ingest", kind="data", workspace=workspace) as run:
            run.output(_dataset(workspace, "sales", payload))
    with workspace.ledger.reader() as s:
        assert resolve_dataset(s, "sales@latest").hash == Digest.of_bytes(first).hex


def test_names_are_checked():
    from provenflow.ledger.refs import check_name, safe_name

    assert check_name("penguins-species_2.v1", "model") == "penguins-species_2.v1"
    for bad in ("../escape", "x@y", "sp ace", "", "-lead"):
        with pytest.raises(RefError, match="is not allowed"):
            check_name(bad, "dataset")
    assert safe_name("uni-body mass") == "uni-body-mass"


def test_edge_names_never_keep_credentials(workspace):
    with pf.start("linked", workspace=workspace) as run:
        stored = workspace.store.put_bytes(b"remote source")
        run.link("input", "file", "https://alice:Tok3nSecret@files.example/data.csv", stored.digest)
    with workspace.ledger.reader() as s:
        names = [io.name for io in resolve_run(s, run.id).io]
    assert names == ["https://***@files.example/data.csv"]


def test_identical_model_bytes_are_one_version(workspace):
    for _ in range(2):
        with pf.start("train", kind="model", workspace=workspace) as run:
            run.output(_model(workspace, "stable", b"same weights"))
    assert _count(workspace, m.ModelVersion) == 1
    assert run.summary.outputs[0]["name"] == "stable@1"


def test_runs_ending_at_once_number_their_model_versions_apart(workspace):
    """Two runs that read the same highest version both try the next one; the loser's write is a
    LedgerConflict inside the ledger's transaction, and the run numbers again."""
    import threading

    barrier = threading.Barrier(8)
    failures: list[BaseException] = []

    def train(i: int) -> None:
        try:
            run = pf.start(f"train{i}", kind="model", workspace=workspace)
            run.output(_model(workspace, "race", f"model {i}".encode()))
            barrier.wait(timeout=30)
            run.end()
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=train, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures
    with workspace.ledger.reader() as s:
        versions = s.scalars(select(m.ModelVersion.version).where(m.ModelVersion.name == "race")).all()
    assert sorted(versions) == list(range(1, 9))
