"""`provenflow up` / `down` in a fresh project, against the real Prefect server it starts.

One `up` for the module (it deploys every flow, ~30-80 s here); the tests then read what is live
through Prefect's API, launch a deployment that the worker runs, and finally `down`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from provenflow.platform.server import healthy
from tests.conftest import PENGUINS, REPO
from tests.services import free_port

SLUGS = {
    "provenflow-artifact-store",
    "provenflow-ledger-database",
    "provenflow-kubernetes-target",
    "provenflow-container-registry",
    "provenflow-drift-policy",
    "provenflow-performance-policy",
    "provenflow-vsphere-worker-pool",
}


def _pf(root: Path, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provenflow.cli.main", *args],
        cwd=root, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("up") / "project"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    shutil.copy(PENGUINS, root / "penguins.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
    env.update(PROVENFLOW_SERVER_PORT=str(free_port()), PROVENFLOW_REPORTS_PORT=str(free_port()), PYTHONPATH=str(REPO))
    result = _pf(root, env, "up", "--json")
    try:
        assert result.returncode == 0, result.stderr[-2000:]
        report = json.loads(result.stdout)
        yield root, env, report
    finally:
        _pf(root, env, "down", timeout=120)


@pytest.fixture
def client(stack):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api = stack[2]["ui_url"] + "/api"
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        yield c


def test_every_deployment_of_prefect_yaml_is_live(stack, client):
    wanted = {d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    assert {d.name for d in client.read_deployments()} == wanted
    monitor = client.read_deployment_by_name("drift-monitor/drift-monitor-penguins-sex")
    # Hourly, and paused: this project is not provenflow's repository, so it has no penguins-sex to watch
    # (provenflow.platform.prefect_project.deploy_file); the demo, in the repository, gets it switched on.
    assert [(s.schedule.cron, s.active) for s in monitor.schedules] == [("0 * * * *", False)]


def test_retrain_automation_and_crash_automation_exist(client):
    retrain = client.read_deployment_by_name("retrain/retrain")
    automations = client.read_automations()
    triggers = [
        a for a in automations if any(getattr(x, "deployment_id", None) == retrain.id for x in a.actions)
    ]
    # One automation per trigger in prefect.yaml: drift, and a decay of realized performance.
    assert len(triggers) == 2 and all(t.enabled for t in triggers)
    assert sorted(t.name for t in triggers) == ["retrain on decay", "retrain on drift"]
    assert {e for t in triggers for e in t.trigger.expect} == {
        "provenflow.model.drift-detected", "provenflow.model.performance-degraded",
    }  # fmt: skip
    assert any(a.name.startswith("provenflow: crash") for a in automations)


def test_block_types_are_registered(client):
    assert {b.slug for b in client.read_block_types()} >= SLUGS


def test_a_live_worker_runs_a_deployment_launched_through_the_api(stack, client):
    from prefect.client.schemas.objects import WorkerStatus

    root = stack[0]
    workers = client.read_workers_for_work_pool("provenflow-process")
    assert [w.status for w in workers] == [WorkerStatus.ONLINE]
    deployment = client.read_deployment_by_name("data-run/data-run")
    run = client.create_flow_run_from_deployment(
        deployment.id, parameters={"name": "penguins", "source": str(root / "penguins.csv")}
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = client.read_flow_run(run.id)
        if run.state and run.state.is_final():
            break
        time.sleep(1)
    assert run.state.is_completed(), run.state
    # It ran in this project (the worker hands its flow runs PROVENFLOW_HOME).
    assert (root / ".provenflow" / "ledger.db").exists()


def test_up_again_changes_nothing(stack, client):
    root, env, first = stack
    deployed_at = (root / ".provenflow" / "deploy.log").stat().st_mtime
    again = _pf(root, env, "up", "--json")
    assert again.returncode == 0, again.stderr[-2000:]
    second = json.loads(again.stdout)
    assert second["processes"] == first["processes"]
    assert second["deployments"] == first["deployments"]
    assert second["automations"] == first["automations"]
    assert len(client.read_workers_for_work_pool("provenflow-process")) == 1
    # Nothing changed in prefect.yaml or the flows: not deployed again (that costs ~30 s).
    assert (root / ".provenflow" / "deploy.log").stat().st_mtime == deployed_at


def test_down_stops_server_worker_and_local_model_servers(stack):
    root, env, report = stack
    trained = _pf(root, env, "model-run", "--dataset", "penguins@latest", "--target", "sex",
        "--estimator", "sklearn.linear_model.LogisticRegression",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-2000:]
    served = _pf(root, env, "deploy", "penguins-sex@latest", "--target", "local", "--json")
    assert served.returncode == 0, served.stderr[-2000:]
    model_pid = int((root / ".provenflow" / "deployments" / "provenflow-penguins-sex" / "pid").read_text())
    server_pid = int((root / ".provenflow" / "server.pid").read_text())
    worker_pid = report["processes"]["worker"]
    assert all(map(_alive, [model_pid, server_pid, worker_pid]))

    down = _pf(root, env, "down", "--json", timeout=120)
    assert down.returncode == 0, down.stderr
    stopped = json.loads(down.stdout)
    assert stopped["server"] and stopped["worker"] and stopped["model servers"] == [model_pid]
    assert not any(map(_alive, [model_pid, server_pid, worker_pid]))
    assert not healthy(report["ui_url"] + "/api")
