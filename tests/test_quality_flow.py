"""The quality monitor end to end: a deployed model, traffic, labels over HTTP, realized accuracy,
a decay that emits the event (read back through Prefect's events API), and the retrain trigger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest

from provenflow.data.datasets import read_table
from provenflow.ledger import models as m
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS, REPO
from tests.test_cli import pf
from tests.test_drift_flow import deployed  # noqa: F401 (the fixture: penguins-sex@production served locally)

pytestmark = pytest.mark.usefixtures("prefect_api")
EVENT = "provenflow.model.performance-degraded"


def send(endpoint: str, frame) -> list[str]:
    """Predict every row over HTTP; the row ids the server answered."""
    ids = []
    for start in range(0, len(frame), 200):
        records = json.loads(frame.iloc[start : start + 200].to_json(orient="records"))
        answer = httpx.post(f"{endpoint}/predict", json={"records": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        ids += answer.json()["ids"]
    return ids


def label(endpoint: str, ids: list[str], labels: list[str]) -> dict:
    body = {"labels": [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)]}
    answer = httpx.post(f"{endpoint}/feedback", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def events(api: str, since: datetime) -> list[dict]:
    body = {"filter": {"occurred": {"since": since.isoformat()}, "event": {"name": [EVENT]}}}
    return httpx.post(f"{api}/events/filter", json=body, timeout=10).json()["events"]


def quality_artifact() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["quality-penguins-sex"]))
        )
    return max(found, key=lambda a: a.created).data


def test_labels_then_decay_emits_the_event_and_no_decay_does_not(deployed, prefect_api):  # noqa: F811
    from provenflow.blocks.performance import PerformancePolicy
    from provenflow.flows.quality_monitor import quality_monitor

    PerformancePolicy(metric="accuracy", allowed_drop=0.1, min_labelled_rows=100, window_minutes=60,
                      windows=2).save("penguins-sex-quality", overwrite=True)  # fmt: skip
    check = {"model": "penguins-sex@production", "policy_block": "penguins-sex-quality"}
    start = datetime.now(UTC) - timedelta(seconds=5)
    frame = read_table(str(PENGUINS)).dropna(subset=["sex"])
    sample = frame.sample(n=300, replace=True, random_state=21)
    ids = send(deployed, sample.drop(columns=["sex"]))
    time.sleep(2.5)  # local deployments flush their prediction log every second

    unlabelled = quality_monitor(**check)
    assert unlabelled["verdict"] == "not enough labels" and unlabelled["labelled"] == 0

    truth = sample["sex"].tolist()
    stored = label(deployed, ids, truth)
    assert stored["stored"] == 300 and stored["unknown"] == 0
    calm = quality_monitor(**check)
    assert calm["verdict"] == "ok" and calm["labelled"] == 300, calm["reason"]
    assert calm["realized"]["low"] <= calm["realized"]["value"] <= calm["realized"]["high"]
    time.sleep(3)  # an event, had one been sent, reaches the server's events API well within this
    assert events(prefect_api, start) == []

    # The same rows relabelled (the latest label wins): 60 % of them flipped, so accuracy falls to ~0.4.
    flipped = np.where(np.random.default_rng(3).random(300) < 0.6, ["female" if y == "male" else "male" for y in truth],
                       truth).tolist()  # fmt: skip
    stored = label(deployed, ids, flipped)
    assert stored["stored"] == 300 and stored["unknown"] == 0
    decayed = quality_monitor(**check)
    assert decayed["verdict"] == "degraded" and decayed["degraded"] is True
    assert decayed["realized"]["value"] < decayed["training"] - 0.1
    found = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not found:
        found = events(prefect_api, start)
        time.sleep(0.5)
    assert len(found) == 1, found
    payload = found[0]["payload"]
    assert payload["model"] == decayed["model"] and payload["report_id"] == str(decayed["report_id"])
    assert payload["metric"] == "accuracy" and payload["labelled"] == 300

    text = quality_artifact()
    assert "degraded" in text and "realized accuracy ± CI" in text
    assert "estimated accuracy" in text  # CBPE, from the model run's held-out probabilities
    judged = next(i for i, w in enumerate(calm["windows"]) if w["start"] == calm["window"]["start"])
    estimate = calm["estimates"][judged]
    # Labels do not move an estimate; the served rows are mostly rows the model trained on, so it is
    # only asked to be a plausible accuracy, with its band around it.
    assert 0.6 < estimate["accuracy_low"] <= estimate["accuracy"] <= estimate["accuracy_high"] <= 1
    with Workspace.default().ledger.reader() as s:
        reports = s.query(m.QualityReport).order_by(m.QualityReport.id).all()
        assert [r.status for r in reports] == ["not enough labels", "ok", "degraded"]
        assert reports[-1].labelled_rows == 300 and reports[-1].realized == decayed["realized"]["value"]

    shown = pf(Path.cwd(), "quality-check", "penguins-sex@production", "--policy-block", "penguins-sex-quality")
    assert shown.returncode == 0, shown.stderr
    assert "degraded" in shown.stdout and "realized accuracy" in shown.stdout and "300" in shown.stdout


def test_performance_event_fires_the_retrain_trigger(project, prefect_api):
    """prefect.yaml's retrain deployment has a trigger for the decay event too: it must start a flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.events import emit_event

    env = os.environ.copy()
    subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "work-pool", "create", "provenflow-process",
                    "--type", "process", "--overwrite"], cwd=REPO, env=env, check=True, capture_output=True)  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "retrain"],
                          cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("retrain/retrain")
    time.sleep(3)  # the automation is loaded by the server's trigger service
    emit_event(
        event=EVENT,
        resource={
            "prefect.resource.id": "provenflow.model.penguins-sex",
            "prefect.resource.name": "penguins-sex@9",
        },
        payload={"model": "penguins-sex@9", "report_id": "4", "metric": "accuracy"},
    )
    runs = []
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and not runs:
            runs = [
                r
                for r in client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )
                if r.parameters.get("model") == "penguins-sex@9"
            ]
            time.sleep(1)
    assert runs, "no retrain flow run appeared after the performance-degraded event"
