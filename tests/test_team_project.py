"""examples/team_project end to end on a real Prefect server, a real process worker and real HTTP:
the team's own flow trains through its own deployment → log_model → promote → a local model
server (in its own folder, where the team's features.py is not) answers → retrain through the
team's own deployment → the new version is gated, promoted and redeployed → a retrain with no policy
at all (as the decay trigger starts it) finds the deployment that trained the champion and runs it
again → the first training run reproduces identical from its recorded commit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from provenflow.platform import runner
from tests.conftest import PENGUINS, REPO
from tests.serving.conftest import records_of

pytestmark = pytest.mark.usefixtures("prefect_api")
EXAMPLE = REPO / "examples" / "team_project"
POOL = "team-process"  # the example's prefect.yaml names it
COLUMNS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def _prefect(project, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", *args], cwd=project,
                          capture_output=True, text=True, timeout=180, env=os.environ.copy())  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture
def team_project(project):
    """The example copied into a fresh project folder, deployed, with a worker of its pool running."""
    shutil.copytree(EXAMPLE, project, dirs_exist_ok=True)
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "the team's project"]):  # reproducible
        subprocess.run(["git", "-c", "user.email=ds@example.com", "-c", "user.name=ds", *command], cwd=project,
                       check=True, capture_output=True)  # fmt: skip
    subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "work-pool", "create", POOL, "--type", "process"],
                   cwd=project, capture_output=True, text=True, timeout=120, env=os.environ.copy())  # fmt: skip
    _prefect(project, "deploy", "--all")
    # The worker the README starts: Prefect's, with the team's flow runs forked from the project's warm runner.
    home = project / ".provenflow"
    assert runner.start(home, wait=300).running, (home / "runner.log").read_text()[-2000:]
    log = project.parent / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "provenflow"), "pools", "worker", POOL, "--limit", "1"],
            # Polls every second (default 10 s): the test waits for each flow run it starts.
            cwd=project, env={**os.environ, "PREFECT_WORKER_QUERY_SECONDS": "1"}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    yield project
    os.killpg(worker.pid, signal.SIGTERM)  # the worker and the flow-run processes it started
    worker.wait(timeout=30)
    runner.stop(home)
    assert "Note: the warm runner differs" not in log.read_text(errors="replace")  # every run was forked


def test_own_flow_trains_promotes_serves_and_retrains(team_project):
    from prefect.deployments import run_deployment

    import provenflow as pf
    from provenflow.blocks.drift import DriftPolicy
    from provenflow.deploy.local import stop
    from provenflow.flows.deploy import deploy
    from provenflow.flows.promote import promote
    from provenflow.flows.retrain import retrain
    from provenflow.ledger import models as m
    from provenflow.ledger.refs import resolve_model
    from provenflow.modeling import owncode, registry, training
    from provenflow.settings import get_settings
    from provenflow.workspace import Workspace

    with pf.start("ingest"):
        pf.log_dataset(PENGUINS, name="penguins")
    flow_run = run_deployment("train/train", timeout=300)
    assert flow_run.state.is_completed(), flow_run.state
    workspace = Workspace.default()
    with workspace.ledger.reader() as session:
        first = registry.registered_by_flow_run(session, str(flow_run.id), "penguins-species")
        assert first.ref == "penguins-species@1" and first.format == owncode.FORMAT
        assert set(first.signature["code"]) == {"features.py"}  # the team's module rides along
        trained = session.get(m.Run, first.run_id)
        assert next(io.name for io in trained.io if io.kind == "dataset").startswith("penguins@")
        model = training.load_model(workspace.store, first)

    promoted = promote(model="penguins-species@1", to="production", auto_approve=True)
    assert promoted["decision"] == "approved", promoted
    placed = deploy(model="penguins-species@production", target="local")
    deployments = get_settings().home_dir / "deployments"
    names = {placed["name"]}
    try:
        answers_as(placed["endpoint"], model)

        # As a drift event starts it: the monitor's policy block names the team's own deployment.
        DriftPolicy(retrain_deployment="train/train", retrain_parameters={"C": 0.3}, auto_approve=True).save(
            "team-policy", overwrite=True
        )
        result = retrain(model="penguins-species@production", policy_block="team-policy")
        names.add(result["deployment"]["name"])
        assert result["challenger"] == "penguins-species@2" and result["promotion"] == "approved", result
        assert result["training_flow_run"] and result["dataset"] is None
        with workspace.ledger.reader() as session:
            assert registry.holder_of(session, "penguins-species", "production").version == 2
            second = resolve_model(session, "penguins-species@2")
            assert session.get(m.Run, second.run_id).parameters["C"] == 0.3  # the parameters retrain gave
        served = httpx.get(f"{result['deployment']['endpoint']}/metadata", timeout=10).json()
        assert served["model"]["version"] == 2

        # As the decay trigger starts it: no policy block. The champion says which deployment made it.
        again = retrain(model="penguins-species@production")
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            rerun = client.read_flow_run(again["training_flow_run"])
            assert client.read_deployment(rerun.deployment_id).name == "train"
        assert rerun.parameters["C"] == 0.3  # the parameters of the flow run that trained the champion
        # Same code, data and parameters: the same bytes, so the same version (content-addressed), and
        # nothing to promote or redeploy.
        assert again["challenger"] == "penguins-species@2", again
        assert again["promotion"] == "unchanged" and again["deployment"] is None, again

        from provenflow.flows.reproduce import reproduce

        report = reproduce(run_id=first.run_id)
        assert report["verdict"] == "identical", report
    finally:
        for name in names:
            stop(deployments / name)


def pf_rows():
    import pandas as pd

    return pd.read_csv(PENGUINS).dropna(subset=["species"]).sample(30, random_state=2)


def answers_as(endpoint: str, model) -> None:
    """The deployment at ENDPOINT answers the example's rows over HTTP as MODEL predicts them."""
    rows = pf_rows()
    answer = httpx.post(f"{endpoint}/predict", json={"records": records_of(rows, COLUMNS)}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == list(model.predict(rows[COLUMNS]))


@pytest.fixture
def notebook_project(project):
    """The example in a fresh git repository (no deployment, no worker: a notebook needs neither)."""
    shutil.copytree(EXAMPLE, project, dirs_exist_ok=True)
    for command in (["init", "-q"], ["add", "."], ["commit", "-qm", "the team's project"]):
        subprocess.run(["git", "-c", "user.email=ds@example.com", "-c", "user.name=ds", *command], cwd=project,
                       check=True, capture_output=True)  # fmt: skip
    return project


def test_a_notebook_trains_serves_drifts_retrains_and_reproduces(notebook_project, monkeypatch):
    """The example's notebook, run in a real Jupyter kernel, through the whole chain: its model (with
    features.py inside) is promoted and served from another folder; shifted traffic drifts; the retrain
    flow runs the notebook again on the newest data, and its version is gated, promoted and redeployed;
    the first notebook run reproduces identical from its recorded commit and data."""
    import nbformat
    from nbclient import NotebookClient

    import provenflow as pf
    from provenflow.data.datasets import read_table
    from provenflow.deploy.local import stop
    from provenflow.flows.deploy import deploy
    from provenflow.flows.drift_monitor import drift_monitor
    from provenflow.flows.promote import promote
    from provenflow.flows.reproduce import reproduce
    from provenflow.flows.retrain import retrain
    from provenflow.ledger import models as m
    from provenflow.ledger.refs import resolve_model
    from provenflow.modeling import owncode, registry, training
    from provenflow.settings import get_settings
    from provenflow.workspace import Workspace
    from tests.test_drift_flow import send

    with pf.start("ingest"):
        first_data = pf.log_dataset(PENGUINS, name="penguins")
    notebook = notebook_project / "train.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(notebook))  # what Jupyter's server sets; nbclient does not
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    executed = NotebookClient(nbformat.read(notebook, as_version=4), kernel_name="python3", timeout=300,
                              resources={"metadata": {"path": str(notebook_project)}}).execute()  # fmt: skip
    monkeypatch.delenv("JPY_SESSION_NAME")
    run_id, ref = executed.cells[-1].outputs[0]["text"].split()[1:3]
    assert ref == "penguins-notebook@1"
    workspace = Workspace.default()
    with workspace.ledger.reader() as session:
        trained = session.get(m.Run, run_id)
        assert trained.code_entry["kind"] == "notebook" and trained.code_entry["path"] == "train.ipynb"
        first = resolve_model(session, ref)
        assert first.format == owncode.FORMAT and set(first.signature["code"]) == {"features.py"}
        model = training.load_model(workspace.store, first)

    assert promote(model=ref, to="production", auto_approve=True)["decision"] == "approved"
    placed = deploy(model="penguins-notebook@production", target="local")
    deployments = get_settings().home_dir / "deployments"
    names = {placed["name"]}
    try:
        answers_as(placed["endpoint"], model)

        # Production traffic moves away from the training data: heavier penguins.
        shifted = read_table(str(PENGUINS))[COLUMNS].sample(n=600, replace=True, random_state=5)
        shifted["body_mass_g"] += 900
        start = datetime.now(UTC)
        send(placed["endpoint"], shifted)
        time.sleep(2.5)  # local deployments flush their prediction log every second
        report = drift_monitor(model="penguins-notebook@production", since=start)
        assert report["drift"] is True and report["features"]["body_mass_g"]["drift"] is True, (report["verdict"], report.get("reason"))

        # The newest data, as the team's data preparation records it; then the notebook retrains.
        fresh = read_table(str(PENGUINS))
        fresh["body_mass_g"] += 900
        with pf.start("ingest-newest"):
            newest = pf.log_dataset(fresh, name="penguins")
        result = retrain(model="penguins-notebook@production", drift_report=str(report["report_id"]))
        names.add(result["deployment"]["name"])
        assert result["challenger"] == "penguins-notebook@2" and result["promotion"] == "approved", result
        assert result["training_entry"]["kind"] == "notebook" and result["training_flow_run"] is None
        with workspace.ledger.reader() as session:
            assert registry.holder_of(session, "penguins-notebook", "production").version == 2
            second = resolve_model(session, "penguins-notebook@2")
            retrained = session.get(m.Run, second.run_id)
            assert retrained.code_entry["kind"] == "notebook"  # the notebook ran again, in a kernel
            assert {io.hash for io in retrained.io if io.kind == "dataset"} == {newest.hash}
        served = httpx.get(f"{result['deployment']['endpoint']}/metadata", timeout=10).json()
        assert served["model"]["version"] == 2

        # The first notebook run, at its recorded commit, on the data it read (not the newest).
        again = reproduce(run_id=run_id)
        assert again["verdict"] == "identical", again
        with workspace.ledger.reader() as session:
            rerun = session.get(m.Run, again["reproduction"])
            assert {io.hash for io in rerun.io if io.kind == "dataset"} == {first_data.hash}
    finally:
        for name in names:
            stop(deployments / name)
