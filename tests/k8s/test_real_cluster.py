"""Against a real cluster, only when KUBECONFIG is set (never here or in CI, where there is none).

With KUBECONFIG set, the rendered manifests are created with a server-side dry run (the cluster's own
validation and admission, nothing stored). With PROVENFLOW_TEST_K8S_IMAGE also set (a digest-pinned
provenflow serving image the cluster can pull), a real deploy runs, then is deleted.
PROVENFLOW_TEST_K8S_NAMESPACE names the namespace (default: default).
"""

from __future__ import annotations

import contextlib
import os

import pytest

from provenflow.deploy.kubernetes import (
    KubernetesTargetConfig,
    api_client_for,
    deploy,
    render_manifests,
    resource_name,
    validate_manifests,
)

# Not services.unavailable(): a cluster is optional everywhere, so a missing KUBECONFIG skips even
# under CI=true, where it is expected.
pytestmark = pytest.mark.skipif(
    not os.environ.get("KUBECONFIG"),
    reason="KUBECONFIG is not set: no real Kubernetes cluster to test against (expected here and in CI)",
)

PROVENANCE = {"model": "provenflow-smoke", "model-version": "1", "training-run": "real-cluster-test"}


@pytest.fixture
def target() -> KubernetesTargetConfig:
    return KubernetesTargetConfig(
        namespace=os.environ.get("PROVENFLOW_TEST_K8S_NAMESPACE", "default"),
        kubeconfig_path=os.environ["KUBECONFIG"],
        readiness_timeout_seconds=180,
    )


def _kubernetes_version(api_client) -> str:
    from kubernetes import client

    info = client.VersionApi(api_client).get_code()
    return f"{info.major}.{info.minor.rstrip('+')}"


def test_the_cluster_accepts_the_manifests_in_a_dry_run(target):
    from kubernetes import client

    api_client = api_client_for(target)
    image = "registry.invalid/provenflow/smoke@sha256:" + "0" * 64
    manifests = render_manifests(target, resource_name("provenflow-smoke", "dry-run"), image, PROVENANCE, {})
    validate_manifests(manifests, kubernetes_version=_kubernetes_version(api_client))
    creators = {
        "Deployment": client.AppsV1Api(api_client).create_namespaced_deployment,
        "Service": client.CoreV1Api(api_client).create_namespaced_service,
        "HorizontalPodAutoscaler": client.AutoscalingV2Api(
            api_client
        ).create_namespaced_horizontal_pod_autoscaler,
    }
    for manifest in manifests:
        creators[manifest["kind"]](target.namespace, manifest, dry_run="All")


def test_a_real_deploy_rolls_out(target):
    image = os.environ.get("PROVENFLOW_TEST_K8S_IMAGE")
    if not image:
        pytest.skip("PROVENFLOW_TEST_K8S_IMAGE is not set: no serving image the cluster can pull")
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api_client = api_client_for(target)
    name = resource_name("provenflow-smoke", "1")
    manifests = render_manifests(target, name, image, PROVENANCE, {})
    try:
        result = deploy(api_client, target, manifests, poll_interval=2)
        assert result.endpoint == f"http://{name}.{target.namespace}.svc.cluster.local:80"
        assert result.revision >= 1
    finally:  # a failed deploy has already deleted what it created
        for delete in (
            client.AppsV1Api(api_client).delete_namespaced_deployment,
            client.CoreV1Api(api_client).delete_namespaced_service,
        ):
            with contextlib.suppress(ApiException):
                delete(name, target.namespace)
