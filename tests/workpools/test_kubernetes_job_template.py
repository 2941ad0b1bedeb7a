"""provenflow's Kubernetes base job template, rendered for a flow run by prefect-kubernetes and checked
strictly against the official Kubernetes schemas."""

from __future__ import annotations

import copy

import pytest

from provenflow.deploy.kubernetes import validate_manifests
from provenflow.deploy.kubernetes_manifests import validate_manifest
from provenflow.workers.errors import PoolError
from provenflow.workers.pools import KUBERNETES_TEMPLATE, load_kubernetes_template
from tests.workpools.conftest import render_job

IMAGE = "registry.local:5000/provenflow/flows@sha256:" + "2" * 64


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def test_default_variables_render_a_strictly_valid_job():
    job, flow_run = render_job(load_kubernetes_template(), {})
    validate_manifest(job)  # strict: no unknown fields anywhere
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "provenflow"
    assert job["metadata"]["generateName"] == "calm-otter-"
    spec = job["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 0)
    pod = spec["template"]["spec"]
    assert "completions" not in pod and "parallelism" not in pod
    assert (
        pod["serviceAccountName"] == "provenflow-flow-runner" and pod["automountServiceAccountToken"] is False
    )
    assert pod["restartPolicy"] == "Never"
    container = _container(job)
    assert container["image"] == "registry.local:5000/provenflow/flows:0.1.0"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "4Gi"}}  # fmt: skip
    env = {item["name"]: item for item in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"]["value"] == str(flow_run.id)
    assert env["PROVENFLOW_LEDGER_URL"]["valueFrom"]["secretKeyRef"] == {"name": "provenflow-ledger", "key": "url",
                                                                        "optional": True}  # fmt: skip
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "provenflow-store"
    assert env["PROVENFLOW_SIGNING_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "provenflow-signing-key"
    assert all(
        "value" not in item
        for name, item in env.items()
        if name.startswith(("PROVENFLOW_LEDGER", "PROVENFLOW_SIGNING", "AWS_"))
    )


def test_job_variables_of_a_deployment_override_the_defaults():
    values = {"image": IMAGE, "namespace": "ml", "cpu_request": "2", "memory_limit": "16Gi",
              "ledger_secret": "team-ledger", "env": {"PROVENFLOW_STORE_BLOCK": "team-store"},
              "service_account_name": "ml-runner", "active_deadline_seconds": 3600}  # fmt: skip
    job, _ = render_job(load_kubernetes_template(), values)
    validate_manifests([job])
    container = _container(job)
    assert container["image"] == IMAGE and job["metadata"]["namespace"] == "ml"
    assert (
        container["resources"]["requests"]["cpu"] == "2"
        and container["resources"]["limits"]["memory"] == "16Gi"
    )
    env = {item["name"]: item for item in container["env"]}
    assert env["PROVENFLOW_STORE_BLOCK"]["value"] == "team-store"
    assert env["PROVENFLOW_LEDGER_URL"]["valueFrom"]["secretKeyRef"]["name"] == "team-ledger"
    assert job["spec"]["activeDeadlineSeconds"] == 3600
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "ml-runner"


def test_prefect_kubernetes_default_template_is_what_ours_fixes():
    """The default puts completions/parallelism in the pod spec; the strict check catches it, and ours does not."""
    from prefect_kubernetes.worker import KubernetesWorker

    from provenflow.deploy.errors import ManifestInvalid

    job, _ = render_job(copy.deepcopy(KubernetesWorker.get_default_base_job_template()), {"image": IMAGE})
    with pytest.raises(ManifestInvalid, match=r"completions|parallelism"):
        validate_manifest(job)
    ours, _ = render_job(load_kubernetes_template(), {"image": IMAGE})
    validate_manifest(ours)


def test_template_keeps_every_variable_of_the_default_and_describes_its_own():
    from prefect_kubernetes.worker import KubernetesWorker

    ours = load_kubernetes_template()["variables"]["properties"]
    default = KubernetesWorker.get_default_base_job_template()["variables"]["properties"]
    assert set(default) <= set(ours)
    for name, spec in ours.items():
        assert spec.get("description"), f"variable {name} needs a description"


def test_defaults_can_be_set_and_unknown_ones_are_refused():
    template = load_kubernetes_template(image=IMAGE, namespace="ml")
    assert template["variables"]["properties"]["image"]["default"] == IMAGE
    job, _ = render_job(template, {})
    assert _container(job)["image"] == IMAGE and job["metadata"]["namespace"] == "ml"
    with pytest.raises(PoolError, match="no variable 'imag'"):
        load_kubernetes_template(imag=IMAGE)
    assert KUBERNETES_TEMPLATE.name == "kubernetes-base-job-template.json"
