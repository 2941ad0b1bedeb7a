"""Reproducing recorded runs, against a real Prefect server and a real git repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from provenflow.digest import Digest
from provenflow.ledger import models as m
from provenflow.modeling import signing
from provenflow.modeling.reproduce import ReproductionError
from provenflow.tracking import code_seal
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS

pytestmark = pytest.mark.usefixtures("prefect_api")

ESTIMATOR = """\
from sklearn.linear_model import LogisticRegression


class Model(LogisticRegression):
    def __init__(self, C=1.0, max_iter=500):
        super().__init__(C=C, max_iter=max_iter)
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(project: Path) -> Path:
    """The user's project as a git repository with its data and a model module of its own."""
    shutil.copy(PENGUINS, project / "penguins.csv")
    (project / "mymodel.py").write_text(ESTIMATOR)
    git(project, "init", "-q")
    git(project, "config", "user.email", "ds@example.com")
    git(project, "config", "user.name", "ds")
    git(project, "add", ".")
    git(project, "commit", "-qm", "data and model code")
    return project


def flows():
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run
    from provenflow.flows.reproduce import reproduce

    return data_run, model_run, reproduce


def test_every_demo_run_reproduces_identical(repo):
    from provenflow.demo.run import EXPERIMENTS

    data_run, model_run, reproduce = flows()
    data = data_run(name="penguins", source="penguins.csv")
    report = reproduce(run_id=data["run_id"])
    assert report["verdict"] == "identical", report
    assert report["dataset_hash"]["reproduced"] == data["dataset"]["hash"]

    for estimator, params in EXPERIMENTS:
        trained = model_run(
            dataset=data["dataset"]["ref"], target="sex", estimator=estimator, params=params, seed=7
        )
        report = reproduce(run_id=trained["run_id"])
        assert report["verdict"] == "identical", report
        assert report["model_hash"] == {
            "original": trained["model"]["hash"],
            "reproduced": trained["model"]["hash"],
        }
        assert all(v["equal"] for v in report["metrics"].values())
        assert report["causes"] == [] and report["env_diff"] == []
        assert report["code"]["same"] is True

    # A reproduction registers no new versions.
    with Workspace.default().ledger.reader() as s:
        assert len(s.scalars(select(m.ModelVersion)).all()) == len(EXPERIMENTS)
        assert len(s.scalars(select(m.DatasetVersion)).all()) == 1


def test_unseeded_estimator_says_non_determinism(repo):
    data_run, model_run, reproduce = flows()
    ref = data_run(name="penguins", source="penguins.csv")["dataset"]["ref"]
    trained = model_run(dataset=ref, target="species", estimator="sklearn.ensemble.RandomForestClassifier",
                        params={"random_state": None, "n_estimators": 5})  # fmt: skip
    report = reproduce(run_id=trained["run_id"])
    assert report["verdict"] in ("equivalent", "different")
    assert report["model_hash"]["original"] != report["model_hash"]["reproduced"]
    assert report["causes"] == ["non-determinism"]


def test_altered_input_is_refused_naming_the_object(repo):
    data_run, model_run, reproduce = flows()
    data = data_run(name="penguins", source="penguins.csv")
    trained = model_run(
        dataset=data["dataset"]["ref"], target="species", estimator="sklearn.tree.DecisionTreeClassifier"
    )
    path = Path(Workspace.default().store.path(Digest(data["dataset"]["hash"])))
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(
        ReproductionError,
        match=f"input dataset '{data['dataset']['ref']}'.*{data['dataset']['hash']}.*corrupt",
    ):
        reproduce(run_id=trained["run_id"])
    with Workspace.default().ledger.reader() as s:
        assert s.scalars(select(m.Reproduction)).all() == []


def test_changed_training_code(repo, monkeypatch):
    from provenflow.settings import get_settings

    # The project's own estimator module is allowed by setting; the re-runs must get the setting too.
    monkeypatch.setenv("PROVENFLOW_ESTIMATOR_MODULES", "sklearn,mymodel")
    get_settings.cache_clear()
    data_run, model_run, reproduce = flows()
    ref = data_run(name="penguins", source="penguins.csv")["dataset"]["ref"]
    trained = model_run(dataset=ref, target="species", estimator="mymodel.Model", params={"C": 0.5})
    # One changed line of training code: fewer solver iterations than the recorded run used.
    (repo / "mymodel.py").write_text(ESTIMATOR.replace("max_iter=max_iter)", "max_iter=3)"))

    current = reproduce(run_id=trained["run_id"], code="current")
    assert current["verdict"] == "different"
    assert "code" in current["causes"] and "non-determinism" not in current["causes"]
    assert current["code"]["same"] is False

    recorded = reproduce(run_id=trained["run_id"], code="recorded")  # the recorded code, not today's
    assert recorded["verdict"] == "identical", recorded


def test_different_package_version_is_reported(repo):
    data_run, model_run, reproduce = flows()
    ref = data_run(name="penguins", source="penguins.csv")["dataset"]["ref"]
    trained = model_run(dataset=ref, target="species", estimator="sklearn.tree.DecisionTreeClassifier")
    # The run as if recorded on a machine with another scikit-learn: its environment row says so.
    with Workspace.default().ledger.transaction() as s:
        run = s.get(m.Run, trained["run_id"])
        packages = [
            p if not p.startswith("scikit-learn==") else "scikit-learn==0.24.2"
            for p in run.environment.packages
        ]
        s.add(
            m.Environment(hash="f" * 64, python=run.environment.python, platform="other", packages=packages)
        )
        run.environment_hash = "f" * 64
        # Recorded there, so sealed there (the seal covers the environment): sealed again here.
        run.code_seal = code_seal.seal(code_seal.CodeIdentity.of(run), signing.signing_key())
    report = reproduce(run_id=trained["run_id"])
    change = next(d for d in report["env_diff"] if d["package"] == "scikit-learn")
    assert change["change"] == "changed" and change["recorded"] == "0.24.2"


def test_lineage_lists_reproductions_and_refusals(repo):
    from provenflow.tracking.lineage import lineage

    data_run, model_run, reproduce = flows()
    ref = data_run(name="penguins", source="penguins.csv")["dataset"]["ref"]
    trained = model_run(dataset=ref, target="species", estimator="sklearn.tree.DecisionTreeClassifier")
    report = reproduce(run_id=trained["run_id"])
    with Workspace.default().ledger.reader() as s:
        graph = lineage(s, f"penguins-species@{trained['model']['version']}")
        producer = graph["upstream"][0]
        assert producer["id"] == trained["run_id"]
        assert [(r["verdict"], r["rerun_id"]) for r in producer["reproductions"]] == [
            ("identical", report["reproduction"])
        ]
        run = s.get(m.Run, trained["run_id"])
        run.code_commit = "0" * 40  # a commit this repository has never seen
        # As if recorded (and sealed) in a clone with a commit not fetched here; a ledger write
        # without the key is refused before this (tests/security/test_reproduce_sealed.py).
        run.code_seal = code_seal.seal(code_seal.CodeIdentity.of(run), signing.signing_key())
        s.commit()
    with pytest.raises(ReproductionError, match=r"commit 0{40} .* is not in the repository"):
        reproduce(run_id=trained["run_id"])


def test_failed_runs_and_other_flows_are_refused(repo):
    data_run, _, reproduce = flows()
    with pytest.raises(Exception, match="no file at"):
        data_run(name="broken", source="missing.csv")
    with Workspace.default().ledger.reader() as s:
        failed = s.scalars(select(m.Run).where(m.Run.state == "failed")).one().id
    with pytest.raises(ReproductionError, match="ended failed"):
        reproduce(run_id=failed)


def test_a_folder_data_run_reproduces_identical(repo):
    """The folder is rebuilt from the stored files under their relative paths (partition folders too)."""
    import pandas as pd

    frame = pd.read_csv(repo / "penguins.csv")
    for island, rows in frame.groupby("island"):
        (repo / "byisland" / f"island={island}").mkdir(parents=True)
        rows.drop(columns="island").to_csv(repo / "byisland" / f"island={island}" / "part.csv", index=False)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "partitioned copy")
    data_run, _, reproduce = flows()
    data = data_run(name="islands", source="byisland")
    report = reproduce(run_id=data["run_id"])
    assert report["verdict"] == "identical", report
    assert report["dataset_hash"]["reproduced"] == data["dataset"]["hash"]
