"""Release a model as an image (real Docker engine and registry), deploy it, call it over HTTP."""

from __future__ import annotations

import json
import tempfile
import urllib.request
from pathlib import Path

import pytest

from provenflow.deploy.errors import RolloutFailed
from provenflow.deploy.release import DEFAULT_BASE_IMAGE
from provenflow.tracking.lineage import lineage
from provenflow.workspace import Workspace
from tests import services
from tests.conftest import REPO

pytestmark = pytest.mark.usefixtures("prefect_api")
ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5, "flipper_length_mm": 215.0,
       "body_mass_g": 5000.0, "sex": "female", "year": 2008}  # fmt: skip


@pytest.fixture(scope="session")
def docker_client():
    client = services.docker_engine()
    services.ensure_base_image(client, DEFAULT_BASE_IMAGE, REPO)
    return client


@pytest.fixture(scope="session")
def registry():
    base = Path(tempfile.mkdtemp(prefix="provenflow-registry-"))
    reg = services.start_registry(base)
    yield reg.address
    reg.stop()


def post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_release_deploy_predict_and_swap(project, penguins, docker_client, registry):
    from provenflow.flows.data_run import data_run
    from provenflow.flows.deploy import deploy
    from provenflow.flows.model_run import model_run
    from provenflow.flows.release import release

    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    first = model_run(dataset=ref, target="species", estimator="sklearn.ensemble.RandomForestClassifier",
                      params={"n_estimators": 30}, seed=1)  # fmt: skip
    model = f"penguins-species@{first['model']['version']}"

    released = release(model=model, registry=registry)
    assert released["reference"] == f"{registry}/provenflow/penguins-species@{released['digest']}"
    labels = docker_client.images.get(released["reference"]).labels
    assert labels["io.provenflow.model.hash"] == first["model"]["hash"]
    assert labels["io.provenflow.training-run"] == first["run_id"]
    assert labels["io.provenflow.datasets"] == ref
    manifest = urllib.request.Request(
        f"http://{registry}/v2/provenflow/penguins-species/manifests/{released['digest']}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(manifest) as response:  # the registry has exactly that digest
        assert response.status == 200

    placed = deploy(model=model, target="docker")
    endpoint = placed["endpoint"]
    try:
        status, answer = post(f"{endpoint}/predict", {"records": [ROW]})
        assert status == 200 and answer["predictions"] == ["Gentoo"]
        assert answer["model"]["hash"] == first["model"]["hash"]
        status, problem = post(f"{endpoint}/predict", {"records": [{**ROW, "bill_length_mm": "long"}]})
        assert status == 422 and "bill_length_mm" in json.dumps(problem)
        container = docker_client.containers.get(placed["name"])
        assert container.attrs["Config"]["User"] == "10001"
        with urllib.request.urlopen(f"{endpoint}/metrics") as response:  # prometheus-client is in the image
            assert b"provenflow_rows_predicted_total 1.0" in response.read()

        # A version that cannot start never replaces the one serving.
        second = model_run(
            dataset=ref, target="species", estimator="sklearn.tree.DecisionTreeClassifier", seed=1
        )
        model2 = f"penguins-species@{second['model']['version']}"
        release(model=model2, registry=registry)
        with pytest.raises(RolloutFailed, match="keeps serving the previous version"):
            deploy(
                model=model2,
                target="docker",
                env={"PROVENFLOW_PREDICTION_LOG_URL": "nosuchscheme://x"},
                timeout=30,
            )
        assert post(f"{endpoint}/predict", {"records": [ROW]})[1]["model"]["hash"] == first["model"]["hash"]

        swapped = deploy(model=model2, target="docker")
        assert swapped["details"]["replaced"] == container.id
        status, answer = post(f"{swapped['endpoint']}/predict", {"records": [ROW]})
        assert answer["model"]["hash"] == second["model"]["hash"]
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": "provenflow-penguins-species"}):
            c.remove(force=True)

    with Workspace.default().ledger.reader() as s:
        graph = lineage(s, model)
    assert graph["node"]["releases"][0]["image"] == released["reference"]
    assert graph["node"]["deployments"][0]["endpoint"] == endpoint
    logged = list((project / ".provenflow" / "store" / "predictions" / "penguins-species").rglob("*.parquet"))
    assert logged, "the container's predictions reach the store's prediction log"


def test_deploy_to_kubernetes_through_the_flow(project, penguins, tmp_path):
    from datetime import UTC, datetime

    from provenflow.blocks.kubernetes import KubernetesTarget
    from provenflow.flows.data_run import data_run
    from provenflow.flows.deploy import deploy
    from provenflow.flows.model_run import model_run
    from provenflow.ledger import models as m
    from provenflow.ledger.refs import resolve_model
    from tests.k8s.fake_apiserver import FakeKubernetes

    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    trained = model_run(dataset=ref, target="species", estimator="sklearn.tree.DecisionTreeClassifier")
    model = f"penguins-species@{trained['model']['version']}"
    reference = "registry.local:5000/provenflow/penguins-species@sha256:" + "a" * 64
    with Workspace.default().ledger.transaction() as s:  # a release as the release flow records it
        version = resolve_model(s, model)
        s.add(m.Release(model_version_id=version.id, image="x", digest="sha256:" + "a" * 64, reference=reference,
                        labels={"io.provenflow.model.hash": version.hash}, created_at=datetime.now(UTC)))  # fmt: skip
    with FakeKubernetes(ready_delay=0.1, deadline_delay=0.3) as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        KubernetesTarget(
            namespace="models", kubeconfig_path=str(kubeconfig), readiness_timeout_seconds=10
        ).save("fake-cluster", overwrite=True)
        placed = deploy(model=model, target="kubernetes", kubernetes_block="fake-cluster", timeout=20)
        assert placed["endpoint"] == "http://provenflow-penguins-species.models.svc.cluster.local:80"
        assert placed["details"]["revision"] == 1
    with Workspace.default().ledger.reader() as s:
        assert lineage(s, model)["node"]["deployments"][0]["target"] == "kubernetes"


def test_a_local_deploy_interrupted_before_ready_leaves_no_server(project, tmp_path, monkeypatch):
    """A Ctrl-C in the demo's deploy step, while the new server was starting, left it running with
    no pid file: `provenflow down` did not know it and it served on for the rest of the session."""
    import subprocess

    from provenflow.deploy import local

    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def recorded(*args, **kwargs):
        started.append(popen(*args, **kwargs))
        return started[-1]

    def interrupt(*_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(local.subprocess, "Popen", recorded)
    monkeypatch.setattr(local, "_serves", interrupt)
    folder = tmp_path / "deployments" / "m"
    with pytest.raises(KeyboardInterrupt):
        local.deploy(tmp_path / "bundle", folder, "m", "file:///dev/null", None, 30, "hash")
    (server,) = started
    assert server.wait(timeout=10) == -9  # killed, not left running
    assert not (folder / "pid").exists()


def test_a_release_to_a_registry_nobody_runs_fails_before_the_build(project, penguins):
    """Before: the image was built (49 s on a fresh clone, silent), then the push failed with
    'connection refused', and the built image stayed on disk."""
    import time

    from provenflow.deploy.release import ReleaseError, check_registry
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run
    from provenflow.flows.release import release

    data = data_run(name="penguins", source=str(penguins))["dataset"]
    trained = model_run(dataset=data["ref"], target="sex", estimator="sklearn.linear_model.LogisticRegression")
    port = services.free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ReleaseError, match=rf"no container registry answers at 127\.0\.0\.1:{port} "):
        release(model=f"penguins-sex@{trained['model']['version']}", registry=f"127.0.0.1:{port}")
    assert time.monotonic() - started < 15  # refused before any bundle, wheel or image
    check_registry("team/model")  # Docker Hub's names carry no host: not checked
