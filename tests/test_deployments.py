"""prefect.yaml deploys without prompts, and a deployment runs on a real process worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PENGUINS, REPO

pytestmark = pytest.mark.usefixtures("prefect_api")
POOL = "provenflow-process"


def _prefect(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy(),
    )  # fmt: skip


def test_deploy_all_and_run_data_run_on_a_worker(tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    created = subprocess.run(
        [str(Path(sys.executable).parent / "provenflow"), "pools", "create"],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    deployed = _prefect("deploy", "--all")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr

    with get_client(sync_client=True) as client:
        names = {d.name for d in client.read_deployments()}
        assert {"data-run", "model-run", "reproduce", "promote", "release", "deploy", "drift-monitor-penguins-sex",
                "quality-monitor-penguins-sex",
                "retrain", "provision-workers", "model-run-vsphere", "model-run-kubernetes"} <= names  # fmt: skip
        assert (
            client.read_deployment_by_name("model-run/model-run-kubernetes").work_pool_name
            == "provenflow-kubernetes"
        )
        model = client.read_deployment_by_name("model-run/model-run")
        assert model.parameters == {"seed": 42, "test_size": 0.25}
        # Heartbeats as often as the crash automation expects them (provenflow.platform.prefect_crashes).
        assert model.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"
        assert set(model.parameter_openapi_schema["required"]) == {"dataset", "target", "estimator"}
        sweep = client.read_deployment_by_name("sweep/sweep")  # launchable from the UI with its parameters
        assert set(sweep.parameter_openapi_schema["required"]) == {"datasets", "target", "estimator", "grid"}

    home = tmp_path / "state"
    flow_run = run_deployment(
        "data-run/data-run",
        parameters={"name": "penguins", "source": str(PENGUINS)},
        job_variables={"env": {"PROVENFLOW_HOME": str(home)}},
        timeout=0,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--run-once"],
        cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        output, _ = worker.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        worker.kill()
        output = worker.communicate()[0]
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert state.is_completed(), f"{state}\n{output[-3000:]}"

    from provenflow.ledger.db import Ledger

    ledger = Ledger(f"sqlite:///{home / 'ledger.db'}")
    with ledger.reader() as session:
        from provenflow.ledger import models as m

        run = session.get(m.Run, str(flow_run.id))
        assert run is not None and run.state == "completed"
        assert [(io.kind, io.name.split("@")[0]) for io in run.io] == [
            ("suite", str(REPO / "expectations" / "penguins.json")),  # the demo's committed suite
            ("file", str(PENGUINS)),
            ("dataset", "penguins"),
        ]
    ledger.dispose()
