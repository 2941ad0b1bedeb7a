"""deploy --shadow-of end to end: local servers (and Kubernetes manifests on the fake API server),
traffic, both prediction logs, `provenflow shadow-report`, and promotion gated on agreement."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from provenflow.data.datasets import read_table
from provenflow.ledger import models as m
from provenflow.serving.predictlog import read_predictions
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS
from tests.services import CLI
from tests.test_release_deploy import docker_client, registry  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("prefect_api")


def train_two(penguins) -> tuple[str, str]:
    """penguins-species@1 (a forest) as production, @2 (a logistic regression) as challenger."""
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run
    from provenflow.flows.promote import promote

    ref = data_run(name="penguins", source=str(penguins))["dataset"]["ref"]
    for estimator, params in (("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 30}),
                              ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000})):  # fmt: skip
        model_run(dataset=ref, target="species", estimator=estimator, params=params, seed=1)
    promote(model="penguins-species@1", to="production", auto_approve=True)
    promote(model="penguins-species@2", to="challenger", auto_approve=True)
    return "penguins-species@production", "penguins-species@challenger"


def mixed_records(n: int, seed: int) -> list[dict]:
    """Columns drawn independently: rows where two different models disagree now and then."""
    frame = read_table(str(PENGUINS)).drop(columns=["species"])
    rng = np.random.default_rng(seed)
    for column in frame.columns:
        frame[column] = rng.permutation(frame[column].to_numpy())
    return json.loads(frame.head(n).to_json(orient="records"))


def test_deploy_a_shadow_locally_report_agreement_and_gate_a_promotion(project, penguins):
    from provenflow.deploy.local import servers_folder, stop
    from provenflow.flows.deploy import deploy
    from provenflow.flows.promote import promote

    production, challenger = train_two(penguins)
    placed = deploy(model=challenger, target="local", shadow_of=production)
    try:
        assert placed["model"] == "penguins-species@1" and placed["name"] == "provenflow-penguins-species"
        shadow = placed["shadow"]
        assert (
            shadow["model"] == "penguins-species@2" and shadow["name"] == "provenflow-penguins-species-shadow"
        )
        assert placed["details"]["shadow_url"] == shadow["endpoint"]

        since = datetime.now(UTC)
        records = mixed_records(120, seed=5)
        answered = []
        with httpx.Client(timeout=30) as client:
            for i in range(0, 120, 4):
                answer = client.post(f"{placed['endpoint']}/predict", json={"records": records[i : i + 4]})
                assert answer.status_code == 200
                answered.append(answer.json()["request_id"])
            # The Open Inference Protocol's requests are mirrored too (by model name: both are penguins-species).
            meta = client.get(f"{placed['endpoint']}/v2/models/penguins-species").json()
            tensors = [{"name": i["name"], "shape": [2], "datatype": i["datatype"],
                        "data": [r[i["name"]] for r in records[:2]]} for i in meta["inputs"]]  # fmt: skip
            v2 = client.post(f"{placed['endpoint']}/v2/models/penguins-species/versions/1/infer",
                             json={"inputs": tensors}, headers={"x-request-id": "v2-request"})  # fmt: skip
            assert v2.status_code == 200, v2.text
            answered.append("v2-request")
            deadline = time.monotonic() + 60
            while 'provenflow_shadow_requests_total{outcome="mirrored"} 31.0' not in (
                text := client.get(f"{placed['endpoint']}/metrics").text
            ):
                assert time.monotonic() < deadline, text
                time.sleep(0.2)
        time.sleep(2.5)  # local deployments flush their prediction logs every second
        store = Workspace.default().store.url
        logs = [read_predictions(store, "penguins-species", v, since=since)[0] for v in (1, 2)]
        assert [set(log["request_id"]) for log in logs] == [set(answered)] * 2

        done = subprocess.run([CLI, "shadow-report", production, "--json"], capture_output=True, text=True,
                              cwd=project, timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["challenger"] == "penguins-species@2" and report["matched"] == 122
        by_key = logs[1].set_index(["request_id", "row"])["prediction"]
        same = [
            p == by_key[(r, w)]
            for r, w, p in logs[0][["request_id", "row", "prediction"]].itertuples(index=False)
        ]
        assert report["agreement"] == pytest.approx(sum(same) / len(same))
        assert 0 < report["agreement"] < 1, "the rows should make the models disagree now and then"
        shown = subprocess.run([CLI, "shadow-report", production, "penguins-species@challenger"], capture_output=True,
                               text=True, cwd=project, timeout=120)  # fmt: skip
        assert (
            shown.returncode == 0 and "122 of 122 production rows answered by both (100.0%)" in shown.stderr
        )

        # The quality monitor reports the challenger too. Labelling every row with production's own
        # prediction makes production's realized accuracy 1 and the challenger's its agreement.
        import provenflow as pf
        from provenflow.blocks.performance import PerformancePolicy
        from provenflow.flows.quality_monitor import quality_monitor

        labels = logs[0][["request_id", "row", "prediction"]].rename(columns={"prediction": "label"})
        assert pf.feedback(production, labels).stored == len(labels)
        PerformancePolicy(min_labelled_rows=50).save("shadow-test-policy", overwrite=True)
        quality = quality_monitor(model=production, policy_block="shadow-test-policy")
        assert quality["realized"]["value"] == 1.0
        assert quality["shadow"]["challenger"] == "penguins-species@2" and quality["shadow"]["matched"] == 122
        assert quality["shadow"]["agreement"] == pytest.approx(report["agreement"])
        assert quality["shadow"]["realized"]["value"] == pytest.approx(report["agreement"])

        # The gate: the challenger's agreement with production, as a row of the promotion's gate.
        # Metric tolerances wide open: only the agreement can hold the candidate back.
        loose = {"accuracy": 1.0, "f1": 1.0, "roc_auc": 1.0}
        strict = promote(model="penguins-species@2", to="production", auto_approve=True,
                         require_agreement=report["agreement"] + 0.01, tolerances=loose)  # fmt: skip
        outcome = strict
        row = next(r for r in outcome["gate"]["rows"] if r["metric"] == "shadow_agreement")
        assert row["ok"] is False and row["candidate"] == pytest.approx(report["agreement"])
        assert outcome["decision"] == "rejected" and outcome["comment"].startswith("shadow_agreement")
        with Workspace.default().ledger.reader() as s:
            holder = s.query(m.ModelAlias).filter_by(name="penguins-species", alias="production").one()
            assert holder.model_version.version == 1
        passed = promote(model="penguins-species@2", to="production", auto_approve=True,
                         require_agreement=report["agreement"], tolerances=loose)  # fmt: skip
        assert passed["decision"] == "approved"
        assert next(r for r in passed["gate"]["rows"] if r["metric"] == "shadow_agreement")["ok"] is True
    finally:
        for name in ("provenflow-penguins-species", "provenflow-penguins-species-shadow"):
            stop(servers_folder() / name)


def test_a_model_cannot_shadow_itself(project, penguins):
    from provenflow.deploy.errors import DeployError
    from provenflow.flows.deploy import deploy

    production, _ = train_two(penguins)
    with pytest.raises(DeployError, match="same version"):
        deploy(model="penguins-species@1", target="local", shadow_of=production)
    done = subprocess.run(
        [CLI, "shadow-report", production], capture_output=True, text=True, cwd=project, timeout=120
    )
    assert done.returncode == 1 and done.stderr.startswith(
        "Error: no deployment of penguins-species@production"
    )
    assert "Traceback" not in done.stderr


def test_kubernetes_production_gets_the_challengers_service_url(project, penguins, tmp_path):
    from provenflow.blocks.kubernetes import KubernetesTarget
    from provenflow.flows.deploy import deploy
    from provenflow.ledger.refs import resolve_model
    from tests.k8s.fake_apiserver import FakeKubernetes

    production, challenger = train_two(penguins)
    with Workspace.default().ledger.transaction() as s:  # releases as the release flow records them
        for ref, digit in ((production, "a"), (challenger, "b")):
            version = resolve_model(s, ref)
            reference = f"registry.local:5000/provenflow/penguins-species@sha256:{digit * 64}"
            s.add(m.Release(model_version_id=version.id, image="x", digest=f"sha256:{digit * 64}", reference=reference,
                            labels={"io.provenflow.model.hash": version.hash}, created_at=datetime.now(UTC)))  # fmt: skip
    with FakeKubernetes(ready_delay=0.1, deadline_delay=0.3) as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        KubernetesTarget(
            namespace="models", kubeconfig_path=str(kubeconfig), readiness_timeout_seconds=10
        ).save("fake-cluster", overwrite=True)
        placed = deploy(model=challenger, target="kubernetes", kubernetes_block="fake-cluster", timeout=20,
                        shadow_of=production)  # fmt: skip
        service = "http://provenflow-penguins-species-shadow.models.svc.cluster.local:80"
        assert placed["shadow"]["endpoint"] == service
        objects = {d["metadata"]["name"]: d for d in fake.list("deployments", "models")}
        assert set(objects) == {"provenflow-penguins-species", "provenflow-penguins-species-shadow"}
        envs = {name: {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])}
                for name, d in objects.items()}  # fmt: skip
        assert envs["provenflow-penguins-species"]["PROVENFLOW_SHADOW_URL"] == service
        assert "PROVENFLOW_SHADOW_URL" not in envs["provenflow-penguins-species-shadow"]
        images = {n: d["spec"]["template"]["spec"]["containers"][0]["image"] for n, d in objects.items()}
        assert images["provenflow-penguins-species"].endswith("a" * 64)
        assert images["provenflow-penguins-species-shadow"].endswith("b" * 64)


def test_docker_production_mirrors_to_a_challenger_container(project, penguins, docker_client, registry):  # noqa: F811
    from provenflow.deploy.docker import SHADOW_NETWORK
    from provenflow.flows.deploy import deploy
    from provenflow.flows.release import release

    production, challenger = train_two(penguins)
    for ref in (production, challenger):
        release(model=ref, registry=registry)
    names = ("provenflow-penguins-species", "provenflow-penguins-species-shadow")
    try:
        since = datetime.now(UTC)
        placed = deploy(model=challenger, target="docker", shadow_of=production, timeout=90)
        assert placed["details"]["shadow_url"] == "http://provenflow-penguins-species-shadow:8080"
        answered = []
        with httpx.Client(timeout=30) as client:
            for i in range(0, 40, 4):
                answer = client.post(
                    f"{placed['endpoint']}/predict", json={"records": mixed_records(40, 9)[i : i + 4]}
                )
                assert answer.status_code == 200
                answered.append(answer.json()["request_id"])
            deadline = time.monotonic() + 60
            while 'provenflow_shadow_requests_total{outcome="mirrored"} 10.0' not in (
                text := client.get(f"{placed['endpoint']}/metrics").text
            ):
                assert time.monotonic() < deadline, text
                time.sleep(0.5)
        for name in names:  # a clean stop writes the last prediction-log segment
            docker_client.containers.get(name).stop(timeout=30)
        store = Workspace.default().store.url
        logs = [read_predictions(store, "penguins-species", v, since=since)[0] for v in (1, 2)]
        assert [set(log["request_id"]) for log in logs] == [set(answered)] * 2
        assert SHADOW_NETWORK in docker_client.containers.get(names[1]).attrs["NetworkSettings"]["Networks"]
    finally:
        for name in names:
            for c in docker_client.containers.list(all=True, filters={"name": f"^{name}(-next)?$"}):
                c.remove(force=True)
