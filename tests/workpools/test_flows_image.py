"""The flows image runs a Kubernetes work pool's flow runs.

`provenflow release --flows` builds the image (real Docker engine, no network in the build) and pushes it to a
real registry; `provenflow pools create` makes it the Kubernetes pool's image; `prefect deploy` registers
`model-run-kubernetes` from prefect.yaml; prefect-kubernetes' own code renders the Job its worker would create
for a flow run of it. There is no Kubernetes API server here (Debian ships none), so the test plays the kubelet:
it runs the Job's one container (image by digest, command, args, env with the Secrets it references, resources,
capabilities) under Docker against the test's Prefect server, a PostgreSQL ledger and a store folder mounted at
the same path. The flow run must complete in Prefect and its model version be in the ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from provenflow.deploy.release import DEFAULT_BASE_IMAGE
from tests import services
from tests.conftest import REPO

POOL = "provenflow-kubernetes"
SECRET_FIELDS = ("valueFrom", "secretKeyRef")


@pytest.fixture(scope="module")
def docker_client():
    client = services.docker_engine()
    services.ensure_base_image(client, DEFAULT_BASE_IMAGE, REPO)
    return client


@pytest.fixture(scope="module")
def registry():
    base = Path(tempfile.mkdtemp(prefix="provenflow-registry-"))
    reg = services.start_registry(base)
    yield reg.address
    reg.stop()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def shared_store():
    """A store folder the pod's user (uid 10001, not root) can reach, mounted at the same path in the pod."""
    base = Path(tempfile.mkdtemp(prefix="provenflow-shared-"))
    base.chmod(0o755)
    yield base / "store"
    shutil.rmtree(base, ignore_errors=True)


def resolve_env(env: list[dict], secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """What the kubelet gives the container: plain values, and Secret keys by reference (an optional
    reference to a missing Secret or key is left out; a required one fails, as the pod would)."""
    resolved = {}
    for item in env:
        if "value" in item:
            resolved[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"pod would not start: secret {ref['name']}/{ref['key']} is missing"
            continue
        resolved[item["name"]] = value
    return resolved


def docker_resources(resources: dict) -> dict:
    """Kubernetes limits as Docker's: cpu '2' or '500m', memory '4Gi' or '512Mi'."""
    limits = resources.get("limits", {})
    out = {}
    if cpu := limits.get("cpu"):
        out["nano_cpus"] = int(float(cpu[:-1]) * 1e6) if cpu.endswith("m") else int(float(cpu) * 1e9)
    if memory := limits.get("memory"):
        units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
        out["mem_limit"] = int(memory[:-2]) * units[memory[-2:]] if memory[-2:] in units else int(memory)
    return out


def render_job_for(flow_run_id) -> dict:
    """The Job manifest prefect-kubernetes' worker builds for this flow run (its own code path)."""
    from prefect.client.orchestration import get_client
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    async def render() -> dict:
        async with get_client() as client:
            flow_run = await client.read_flow_run(flow_run_id)
            pool = await client.read_work_pool(POOL)
            configuration = await KubernetesWorkerJobConfiguration.resolve_for_flow_run(
                flow_run, client=client, work_pool=pool, worker_name="test-kubelet"
            )
        return configuration.job_manifest

    return asyncio.run(render())


def run_job_container(client, job: dict, secrets: dict, store: Path, timeout: float) -> tuple[int, str, dict]:
    """Run the Job's container under Docker as the kubelet would; (exit code, logs, what was run)."""
    (container,) = job["spec"]["template"]["spec"]["containers"]
    security = container.get("securityContext", {})
    spec = {
        "image": container["image"],
        "entrypoint": container.get("command"),  # Kubernetes command = Docker entrypoint
        "command": container.get("args"),  # Kubernetes args = Docker command
        "environment": resolve_env(container["env"], secrets),
        **docker_resources(container.get("resources", {})),
    }
    started = client.containers.run(
        **spec,
        detach=True,
        network_mode="host",  # the pod reaches the Prefect server, PostgreSQL and the registry on 127.0.0.1
        volumes={str(store): {"bind": str(store), "mode": "rw"}},
        cap_drop=security.get("capabilities", {}).get("drop"),
        security_opt=[] if security.get("allowPrivilegeEscalation", True) else ["no-new-privileges"],
        labels={"io.provenflow.test": "flows-image"},
    )
    try:
        code = started.wait(timeout=timeout)["StatusCode"]
        logs = started.logs().decode(errors="replace")
    finally:
        started.remove(force=True)
    return code, logs, spec


@pytest.mark.timeout(2400)  # the first build installs ~300 MB of wheels into the image (minutes on 2 cores)
def test_flows_image_runs_a_kubernetes_flow_run(
    project, penguins, monkeypatch, postgres, prefect_api, docker_client, registry, shared_store
):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from provenflow.cli.workers import pools_app
    from provenflow.deploy.kubernetes_manifests import validate_manifest
    from provenflow.flows.build_flows_image import build_flows_image
    from provenflow.flows.data_run import data_run
    from provenflow.ledger import models as m
    from provenflow.modeling.signing import signing_key
    from provenflow.settings import get_settings
    from provenflow.workspace import Workspace

    ledger_url = postgres.create_database("flows_image_ledger")
    monkeypatch.setenv("PROVENFLOW_LEDGER_URL", ledger_url)
    monkeypatch.setenv("PROVENFLOW_STORE_URL", str(shared_store))
    get_settings.cache_clear()

    dataset = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    subprocess.run(["chown", "-R", "10001:10001", str(shared_store)], check=True)

    started = time.monotonic()
    built = build_flows_image(registry=registry)
    build_seconds = time.monotonic() - started
    assert built["reference"] == f"{registry}/provenflow/flows@{built['digest']}"
    assert any(r.startswith("prefect==") for r in built["requirements"])

    # No --image: the pool takes the flows image just recorded in the ledger.
    created = CliRunner().invoke(pools_app, ["create", "--skip", "process", "--skip", "vsphere", "--json"])
    assert created.exit_code == 0, created.output
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(POOL)
    assert pool.base_job_template["variables"]["properties"]["image"]["default"] == built["reference"]

    deployed = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--name", "model-run-kubernetes"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    parameters = {"dataset": dataset, "target": "species", "estimator": "sklearn.ensemble.RandomForestClassifier",
                  "params": {"n_estimators": 20}, "seed": 3}  # fmt: skip
    flow_run = run_deployment("model-run/model-run-kubernetes", parameters=parameters, timeout=0)

    job = render_job_for(flow_run.id)
    validate_manifest(job)
    # The Secrets the cluster would hold (infra/kubernetes/prefect-config.yaml says how they are made).
    secrets = {
        "provenflow-ledger": {"url": ledger_url},
        "provenflow-store": {"url": str(shared_store)},
        "provenflow-signing-key": {"key": signing_key(create=True).text()},
    }
    started = time.monotonic()
    code, logs, spec = run_job_container(docker_client, job, secrets, shared_store, timeout=900)
    run_seconds = time.monotonic() - started
    shown = {k: v for k, v in spec["environment"].items() if k not in (
        "PROVENFLOW_SIGNING_KEY", "PROVENFLOW_LEDGER_URL")}
    print(json.dumps({"image": spec["image"], "entrypoint": spec["entrypoint"], "command": spec["command"],
                      "env": shown, "build_seconds": round(build_seconds, 1),
                      "run_seconds": round(run_seconds, 1)}, indent=1))  # fmt: skip

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(flow_run.id).state
    assert code == 0 and state.is_completed(), f"exit {code}, {state}\n{logs[-4000:]}"
    assert spec["image"] == built["reference"] and spec["command"] == ["prefect", "flow-run", "execute"]

    with Workspace.default().ledger.reader() as session:
        run = session.get(m.Run, str(flow_run.id))
        assert run is not None and run.state == "completed" and run.kind == "model"
        # The code it ran is the image's: no git there, the commit comes from the image's stamp.
        assert (run.code_commit, run.code_dirty) == (built["code_commit"], built["code_dirty"])
        version = session.query(m.ModelVersion).filter_by(run_id=run.id).one()
        image = session.query(m.FlowsImage).one()
    assert version.name == "penguins-species"
    assert (image.reference, image.run_id) == (built["reference"], built["run_id"])
