"""The drift monitor end to end: a deployed model, logged traffic, drift, the event, the trigger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from provenflow.cli.main import app
from provenflow.data.datasets import read_table
from provenflow.ledger import models as m
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS, REPO

pytestmark = pytest.mark.usefixtures("prefect_api")


def send(endpoint: str, frame) -> None:
    for start in range(0, len(frame), 200):
        records = json.loads(frame.iloc[start : start + 200].to_json(orient="records"))
        request = urllib.request.Request(f"{endpoint}/predict", data=json.dumps({"records": records}).encode(),
                                         headers={"content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def drift_events(api: str, since: datetime) -> list[dict]:
    body = {
        "filter": {
            "occurred": {"since": since.isoformat()},
            "event": {"name": ["provenflow.model.drift-detected"]},
        }
    }
    return httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]


@pytest.fixture
def deployed(project, penguins):
    """penguins-sex@production running as a local server process."""
    from provenflow.deploy.local import stop
    from provenflow.flows.data_run import data_run
    from provenflow.flows.deploy import deploy
    from provenflow.flows.model_run import model_run
    from provenflow.flows.promote import promote
    from provenflow.settings import get_settings

    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    trained = model_run(dataset=ref, target="sex", estimator="sklearn.linear_model.LogisticRegression",
                        params={"max_iter": 500}, seed=3)  # fmt: skip
    promote(model=f"penguins-sex@{trained['model']['version']}", to="production", auto_approve=True)
    placed = deploy(model="penguins-sex@production", target="local")
    yield placed["endpoint"]
    stop(get_settings().home_dir / "deployments" / placed["name"])


def test_same_traffic_no_drift_shifted_traffic_drift_and_an_event(deployed, prefect_api):
    from provenflow.flows.drift_monitor import drift_monitor

    features = read_table(str(PENGUINS)).drop(columns=["sex"])
    start = datetime.now(UTC)
    send(deployed, features.sample(n=700, replace=True, random_state=11))
    time.sleep(2.5)  # local deployments flush their prediction log every second
    calm = drift_monitor(model="penguins-sex@production", since=start)
    assert calm["verdict"] == "no drift" and calm["rows"] == 700
    assert not [f for f, v in calm["features"].items() if v["drift"]]
    assert calm["report"] and os.path.exists(calm["report"])

    shifted_at = datetime.now(UTC)
    shifted = features.sample(n=700, replace=True, random_state=12)
    shifted["flipper_length_mm"] += 25
    send(deployed, shifted)
    time.sleep(2.5)
    stormy = drift_monitor(model="penguins-sex@production", since=shifted_at)
    assert stormy["drift"] is True
    assert stormy["features"]["flipper_length_mm"]["drift"] is True
    assert not stormy["features"]["island"]["drift"]
    # The Evidently page gives each column provenflow's test and verdict (the prediction's too), and the
    # artifact lists what the CLI lists. Before, Evidently chose its own tests and the artifact left out
    # a drifted prediction the CLI showed.
    page = Path(stormy["report"]).read_text(encoding="utf-8")
    assert "provenflow psi on all 700 rows" in page and "Value Drift for column prediction" in page
    assert "this report is for looking" not in page
    listed = [*(f for f, v in stormy["features"].items() if v["drift"]),
              *(["(prediction)"] if stormy["prediction"] and stormy["prediction"]["drift"] else [])]  # fmt: skip
    artifact = httpx.post(f"{prefect_api}/artifacts/filter", timeout=10, json={
        "artifacts": {"key": {"any_": ["drift-report-penguins-sex"]}}, "sort": "CREATED_DESC", "limit": 1,
    }).json()[0]  # fmt: skip
    assert f"Drifted: {', '.join(listed)}" in artifact["data"]
    assert "| column | test | score | threshold | verdict |" in artifact["data"]
    assert "| flipper_length_mm | psi |" in artifact["data"] and "| (prediction) |" in artifact["data"]
    # The drift history is one table over time (before: one per-feature table per check).
    history = httpx.post(f"{prefect_api}/artifacts/filter", timeout=10, json={
        "artifacts": {"key": {"any_": ["drift-penguins-sex"]}}, "sort": "CREATED_DESC", "limit": 1,
    }).json()[0]["data"]  # fmt: skip
    history = json.loads(history) if isinstance(history, str) else history
    assert [(h["verdict"], h["rows"]) for h in history] == [("drift", 700), ("no drift", 700)]
    assert "flipper_length_mm" in history[0]["drifted"] and history[0]["flipper_length_mm"] > 0.1
    with Workspace.default().ledger.reader() as s:
        report = s.get(m.DriftReport, stormy["report_id"])
        assert report.status == "drift" and report.rows == 700 and report.report_hash
    deadline = time.monotonic() + 20
    events = []
    while time.monotonic() < deadline and not events:
        events = drift_events(prefect_api, shifted_at - timedelta(seconds=5))
        time.sleep(0.5)
    assert events and events[0]["payload"]["model"].startswith("penguins-sex@")
    assert "flipper_length_mm" in events[0]["payload"]["features"]


def test_not_enough_data_and_corrupt_segments(deployed, project):
    from provenflow.flows.drift_monitor import drift_monitor

    folder = project / ".provenflow" / "store" / "predictions" / "penguins-sex"
    version = next(folder.iterdir()) if folder.exists() else None
    start = datetime.now(UTC)
    empty = drift_monitor(model="penguins-sex@production", since=start)
    assert empty["verdict"] == "not enough data" and empty["drift"] is False and empty["report"] is None

    features = read_table(str(PENGUINS)).drop(columns=["sex"])
    send(deployed, features.head(50))
    time.sleep(2.5)
    version = next(folder.iterdir())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    (version / f"{stamp}_{stamp}_corrupt.parquet").write_bytes(b"PAR1 this is not a parquet file")
    few = drift_monitor(model="penguins-sex@production", since=start)
    assert few["verdict"] == "not enough data" and few["rows"] == 50
    assert len(few["skipped_segments"]) == 1 and "corrupt" in few["skipped_segments"][0]


def test_drift_event_fires_the_retrain_trigger(project, prefect_api):
    """prefect.yaml's retrain deployment has an event trigger: a drift event must start a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.events import emit_event

    env = os.environ.copy()
    subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "work-pool", "create", "provenflow-process",
                    "--type", "process", "--overwrite"], cwd=REPO, env=env, check=True, capture_output=True)  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "retrain"],
                          cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/retrain")
        named = {
            a.name: a.description
            for a in client.read_automations()
            if any(getattr(x, "deployment_id", None) == deployment.id for x in a.actions)
        }
    # Before: retrain__automation_1 and _2, "A custom trigger": which one was drift was hidden.
    assert set(named) == {"retrain on drift", "retrain on decay"}
    assert (
        "drift-detected" in named["retrain on drift"] and "performance-degraded" in named["retrain on decay"]
    )
    # What a drift check run by hand now says it starts (before: nothing, while it retrained and
    # redeployed production).
    from provenflow.tracking.prefect_context import automations_expecting

    expecting = automations_expecting("provenflow.model.drift-detected")
    assert "retrain on drift" in expecting and "retrain on decay" not in expecting
    time.sleep(3)  # the automation is loaded by the server's trigger service
    emit_event(
        event="provenflow.model.drift-detected",
        resource={
            "prefect.resource.id": "provenflow.model.penguins-sex",
            "prefect.resource.name": "penguins-sex@4",
        },
        payload={
            "model": "penguins-sex@4",
            "report_id": "17",
            "features": ["flipper_length_mm"],
            "policy_block": "penguins-policy",
        },
    )
    runs = []
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

        while time.monotonic() < deadline and not runs:
            # Earlier tests' drift events may have started retrain runs of their own: find ours.
            runs = [
                r
                for r in client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )
                if r.parameters.get("model") == "penguins-sex@4"
            ]
            time.sleep(1)
    assert runs, "no retrain flow run appeared after the drift event"
    assert runs[0].parameters["drift_report"] == "17"
    # The monitor's policy reaches the retrain flow: it may name the team's own training deployment.
    assert runs[0].parameters["policy_block"] == "penguins-policy"
    with Workspace.default().ledger.reader() as s:
        assert s.scalars(select(m.DriftReport)).all() == []  # the trigger alone records nothing of ours


def test_retrain_after_drift_promotes_and_redeploys(deployed, project):
    from provenflow.flows.drift_monitor import drift_monitor
    from provenflow.ledger.refs import resolve_model
    from provenflow.tracking.lineage import lineage

    features = read_table(str(PENGUINS)).drop(columns=["sex"])
    shifted = features.sample(n=600, replace=True, random_state=5)
    shifted["body_mass_g"] += 900
    start = datetime.now(UTC)
    send(deployed, shifted)
    time.sleep(2.5)
    report = drift_monitor(model="penguins-sex@production", since=start)
    assert report["drift"]

    newest = project / "penguins-newest.csv"
    fresh = read_table(str(PENGUINS))
    fresh["body_mass_g"] += 900
    fresh.to_csv(newest, index=False)
    # `provenflow retrain`, as a user types it after reading the drift report.
    done = CliRunner().invoke(app, ["retrain", "penguins-sex@production", "--source", str(newest),
                                    "--drift-report", str(report["report_id"]), "--json"])  # fmt: skip
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["promotion"] == "approved" and result["deployment"]["target"] == "local"
    with Workspace.default().ledger.reader() as s:
        assert resolve_model(s, "penguins-sex@production").ref == result["challenger"]
        graph = lineage(s, result["challenger"])
        producers = {n["flow"] for n in graph["upstream"]}
        assert {"model-run", "retrain"} <= producers
        retrain_node = next(n for n in graph["upstream"] if n["flow"] == "retrain")
        assert any(i["kind"] == "drift-report" for i in retrain_node["inputs"])
        assert graph["node"]["deployments"][0]["endpoint"] == result["deployment"]["endpoint"]
