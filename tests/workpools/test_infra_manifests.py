"""The in-cluster worker's manifests (infra/kubernetes) pass the official schemas strictly and fit together."""

from __future__ import annotations

import pytest

from provenflow.deploy.kubernetes_manifests import validate_manifest
from provenflow.workers.pools import load_kubernetes_template
from tests.workpools.conftest import infra_manifests

MANIFESTS = infra_manifests()


@pytest.mark.parametrize(("path", "manifest"), MANIFESTS, ids=[f"{p}:{m['kind']}" for p, m in MANIFESTS])
def test_manifest_is_valid(path, manifest):
    validate_manifest(manifest)
    assert manifest["metadata"]["namespace"] == "provenflow"


def _one(kind: str, name: str) -> dict:
    (found,) = [m for _, m in MANIFESTS if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def test_worker_runs_a_kubernetes_worker_for_the_pool_with_its_service_account():
    deployment = _one("Deployment", "provenflow-worker")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == "provenflow-kubernetes"
    assert command[command.index("--type") + 1] == "kubernetes"
    assert pod["serviceAccountName"] == "provenflow-worker"
    _one("ServiceAccount", "provenflow-worker")
    env = {item["name"]: item for item in container["env"]}
    assert "configMapKeyRef" in env["PREFECT_API_URL"]["valueFrom"]
    assert env["PREFECT_API_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True


def test_role_lets_the_worker_run_and_watch_jobs_and_read_pod_logs():
    role = _one("Role", "provenflow-worker")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}  # fmt: skip
    for verb in ("create", "get", "list", "watch", "delete"):
        assert ("batch", "jobs", verb) in granted
    for verb in ("get", "list", "watch"):
        assert ("", "pods", verb) in granted
    assert ("", "pods/log", "get") in granted
    binding = _one("RoleBinding", "provenflow-worker")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "provenflow-worker",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "provenflow-worker", "namespace": "provenflow"}
    ]


def test_flow_runs_service_account_exists_and_matches_the_template():
    runner = _one("ServiceAccount", "provenflow-flow-runner")
    assert runner["automountServiceAccountToken"] is False
    default = load_kubernetes_template()["variables"]["properties"]["service_account_name"]["default"]
    assert default == "provenflow-flow-runner"
    namespace = load_kubernetes_template()["variables"]["properties"]["namespace"]["default"]
    assert namespace == runner["metadata"]["namespace"]
