"""Deploying through the official client, over HTTP, to the stateful fake API server."""

from __future__ import annotations

import time

import pytest

from provenflow.deploy.kubernetes import (
    DeployError,
    KubernetesTargetConfig,
    RolloutFailed,
    api_client_for,
    deploy,
    render_manifests,
    resource_name,
    validate_manifests,
)
from tests.k8s.conftest import image

NAME = resource_name("penguins-sex")
FAST = {"poll_interval": 0.05}


def _manifests(config, provenance, char: str, **labels) -> list[dict]:
    manifests = render_manifests(config, NAME, image(char), {**provenance, **labels}, {})
    validate_manifests(manifests)
    return manifests


def _image_of(deployment: dict) -> str:
    return deployment["spec"]["template"]["spec"]["containers"][0]["image"]


def _revision_of(obj: dict) -> int:
    return int(obj["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the fake's controller did not get there in time"
        time.sleep(0.02)


def test_first_deploy_creates_and_waits_for_ready(fake_k8s, api_client, config, provenance):
    result = deploy(api_client, config, _manifests(config, provenance, "a"), **FAST)

    assert result.name == NAME and result.namespace == "models"
    assert result.endpoint == f"http://{NAME}.models.svc.cluster.local:80"
    assert result.revision == 1
    assert result.image == image("a")
    assert [(a.kind, a.action) for a in result.applied] == [("Service", "created"), ("Deployment", "created")]
    assert result.to_dict()["applied"][1] == {"kind": "Deployment", "name": NAME, "action": "created"}

    deployment = fake_k8s.get("deployments", "models", NAME)
    status = deployment["status"]
    assert status["observedGeneration"] == deployment["metadata"]["generation"]
    assert status["readyReplicas"] == status["availableReplicas"] == status["updatedReplicas"] == 2
    assert fake_k8s.get("services", "models", NAME)["spec"]["clusterIP"]
    (replica_set,) = fake_k8s.list("replicasets", "models")
    assert _revision_of(replica_set) == 1


def test_second_deploy_updates_and_bumps_the_revision(fake_k8s, api_client, config, provenance):
    deploy(api_client, config, _manifests(config, provenance, "a"), **FAST)
    cluster_ip = fake_k8s.get("services", "models", NAME)["spec"]["clusterIP"]

    result = deploy(api_client, config, _manifests(config, provenance, "b", **{"model-version": "4"}), **FAST)

    assert result.revision == 2
    assert [(a.kind, a.action) for a in result.applied] == [
        ("Service", "replaced"),
        ("Deployment", "replaced"),
    ]
    deployment = fake_k8s.get("deployments", "models", NAME)
    assert _image_of(deployment) == image("b")
    assert deployment["metadata"]["generation"] == 2
    assert deployment["metadata"]["labels"]["provenflow.io/model-version"] == "4"
    service = fake_k8s.get("services", "models", NAME)
    assert service["spec"]["clusterIP"] == cluster_ip  # kept across the update
    assert service["metadata"]["labels"]["provenflow.io/model-version"] == "4"
    revisions = {
        _image_of(rs): (_revision_of(rs), rs["spec"]["replicas"])
        for rs in fake_k8s.list("replicasets", "models")
    }
    assert revisions == {image("a"): (1, 0), image("b"): (2, 2)}


def test_a_rollout_that_never_becomes_ready_rolls_back(fake_k8s, api_client, config, provenance):
    deploy(api_client, config, _manifests(config, provenance, "a"), **FAST)
    fake_k8s.never_ready_images.add(image("c"))

    with pytest.raises(RolloutFailed) as info:
        deploy(api_client, config, _manifests(config, provenance, "c", **{"model-version": "5"}), **FAST)

    error = info.value
    message = str(error)
    assert error.reason == "ProgressDeadlineExceeded"
    assert error.rolled_back_to == 1
    assert error.deleted == ()
    assert f"Deployment '{NAME}' in namespace 'models' did not become ready" in message
    assert "Progressing=False, reason ProgressDeadlineExceeded" in message
    assert f"back to revision 1 (image {image('a')})" in message
    assert f"kubectl -n models describe deployment {NAME}" in message

    deployment = fake_k8s.get("deployments", "models", NAME)
    assert _image_of(deployment) == image("a")
    assert "pod-template-hash" not in deployment["spec"]["template"]["metadata"]["labels"]
    # the rollback was a JSON patch of the template, as `kubectl rollout undo` sends
    assert (
        "PATCH",
        f"/apis/apps/v1/namespaces/models/deployments/{NAME}",
        "application/json-patch+json",
    ) in (fake_k8s.requests)
    # the Service got its previous labels back
    service = fake_k8s.get("services", "models", NAME)
    assert service["metadata"]["labels"]["provenflow.io/model-version"] == "3"
    # the controller rolls the old template out again, as a new revision
    _wait_until(lambda: (fake_k8s.get("deployments", "models", NAME)["status"].get("readyReplicas") or 0) == 2
                and _revision_of(fake_k8s.get("deployments", "models", NAME)) == 3)  # fmt: skip


def test_a_rollout_that_hangs_times_out_and_rolls_back(fake_k8s, api_client, config, provenance):
    first = deploy(api_client, config, _manifests(config, provenance, "a"), **FAST)
    second = deploy(api_client, config, _manifests(config, provenance, "b"), **FAST)
    fake_k8s.stuck_images.add(image("d"))

    started = time.monotonic()
    with pytest.raises(RolloutFailed) as info:
        deploy(api_client, config, _manifests(config, provenance, "d"), timeout=0.6, **FAST)

    assert time.monotonic() - started < 5
    assert (first.revision, second.revision) == (1, 2)
    assert info.value.reason == "Timeout"
    assert info.value.rolled_back_to == 2
    assert "not ready within 0.6 s (2/2 replicas updated" in str(info.value)
    assert f"back to revision 2 (image {image('b')})" in str(info.value)
    assert _image_of(fake_k8s.get("deployments", "models", NAME)) == image("b")


def test_a_first_deploy_that_never_becomes_ready_deletes_what_it_created(fake_k8s, api_client, provenance):
    config = KubernetesTargetConfig(namespace="models", hpa_max_replicas=3)
    fake_k8s.never_ready_images.add(image("c"))

    with pytest.raises(RolloutFailed) as info:
        deploy(api_client, config, _manifests(config, provenance, "c"), **FAST)

    error = info.value
    assert error.rolled_back_to is None
    assert set(error.deleted) == {f"Service/{NAME}", f"Deployment/{NAME}", f"HorizontalPodAutoscaler/{NAME}"}
    assert f"deleted the new Deployment '{NAME}'" in str(error)
    for plural in ("deployments", "services", "horizontalpodautoscalers", "replicasets"):
        assert fake_k8s.list(plural, "models") == [], plural


def test_a_never_ready_env_knob_works_too(fake_k8s, api_client, config, provenance):
    manifests = render_manifests(config, NAME, image("e"), provenance, {"FAKE_NEVER_READY": "true"})
    with pytest.raises(RolloutFailed, match="ProgressDeadlineExceeded"):
        deploy(api_client, config, manifests, **FAST)


def test_autoscaled_deploy_keeps_the_replica_count_the_hpa_set(fake_k8s, api_client, provenance):
    config = KubernetesTargetConfig(namespace="models", hpa_min_replicas=2, hpa_max_replicas=6)
    first = deploy(api_client, config, _manifests(config, provenance, "a"), **FAST)
    assert [a.kind for a in first.applied] == ["Service", "Deployment", "HorizontalPodAutoscaler"]
    hpa = fake_k8s.get("horizontalpodautoscalers", "models", NAME)
    assert hpa["spec"]["maxReplicas"] == 6
    # the HPA scaled up to 5 meanwhile
    scaled = fake_k8s.get("deployments", "models", NAME)
    scaled["spec"]["replicas"] = 5
    from kubernetes import client

    client.AppsV1Api(api_client).replace_namespaced_deployment(NAME, "models", scaled)

    result = deploy(api_client, config, _manifests(config, provenance, "b"), **FAST)

    assert result.revision == 2
    assert fake_k8s.get("deployments", "models", NAME)["spec"]["replicas"] == 5


def test_an_object_the_api_server_rejects_undoes_what_was_applied(fake_k8s, api_client, config, provenance):
    manifests = _manifests(config, provenance, "a")
    manifests[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"

    with pytest.raises(DeployError) as info:
        deploy(api_client, config, manifests, **FAST)

    message = str(info.value)
    assert f"Creating Deployment '{NAME}' in namespace 'models' failed: HTTP 422 Invalid" in message
    assert "spec.template.spec.containers[0].ports[0].containerPort" in message
    assert f"deleted the new Service '{NAME}'" in message
    assert fake_k8s.list("services", "models") == []


def test_an_update_that_conflicts_reads_again_and_retries(fake_k8s, api_client, config, provenance):
    deploy(api_client, config, _manifests(config, provenance, "a"), **FAST)
    path = f"/apis/apps/v1/namespaces/models/deployments/{NAME}"
    fake_k8s.inject_error("PUT", path, 409, "Conflict", "the object has been modified")

    result = deploy(api_client, config, _manifests(config, provenance, "b"), **FAST)

    assert result.revision == 2
    puts = [request for request in fake_k8s.requests if request[:2] == ("PUT", path)]
    assert len(puts) == 2


def test_manifests_for_another_namespace_are_refused(api_client, config, provenance):
    other = KubernetesTargetConfig(namespace="staging")
    with pytest.raises(
        DeployError, match="is for namespace 'staging', but the target's namespace is 'models'"
    ):
        deploy(api_client, config, _manifests(other, provenance, "a"), **FAST)


def test_an_unreachable_cluster_says_where_it_looked(config, provenance):
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = 0
    with pytest.raises(DeployError, match=r"cannot reach the Kubernetes API at http://127\.0\.0\.1:9"):
        deploy(client.ApiClient(configuration), config, _manifests(config, provenance, "a"), **FAST)


def test_api_client_from_a_kubeconfig_file_and_context(tmp_path, provenance):
    from kubernetes import client

    from tests.k8s.fake_apiserver import FakeKubernetes

    default_host = client.Configuration.get_default_copy().host
    with FakeKubernetes(token="t0ken-for-tests", ready_delay=0.05) as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig", context="lab")
        config = KubernetesTargetConfig(namespace="models", kubeconfig_path=str(kubeconfig), context="lab")
        api = api_client_for(config)
        assert client.VersionApi(api).get_code().git_version == "v1.33.0-fake"
        result = deploy(api, config, _manifests(config, provenance, "a"), **FAST)
        assert result.revision == 1
        # without the token the fake answers 401, and the error says what to check
        bare = fake.api_client()
        bare.configuration.api_key = {}
        with pytest.raises(DeployError, match=r"HTTP 401 Unauthorized.*credentials"):
            deploy(bare, config, _manifests(config, provenance, "b"), **FAST)
    assert client.Configuration.get_default_copy().host == default_host  # no global state touched


def test_api_client_from_kubeconfig_content(tmp_path):
    from kubernetes import client
    from pydantic import SecretStr

    from provenflow.errors import ConfigError
    from tests.k8s.fake_apiserver import FakeKubernetes

    with FakeKubernetes(token="t0ken-for-tests") as fake:
        content = fake.write_kubeconfig(tmp_path / "kubeconfig").read_text()
        api = api_client_for(KubernetesTargetConfig(kubeconfig=SecretStr(content)))
        assert client.VersionApi(api).get_code().minor == "33"

    with pytest.raises(ConfigError, match="context 'nope'") as info:
        api_client_for(KubernetesTargetConfig(kubeconfig=SecretStr(content), context="nope"))
    assert "t0ken-for-tests" not in str(info.value)
    with pytest.raises(ConfigError, match="not valid YAML at line 1") as info:
        api_client_for(KubernetesTargetConfig(kubeconfig=SecretStr("token: [t0ken-for-tests")))
    assert "t0ken-for-tests" not in str(info.value)
    with pytest.raises(ConfigError, match="kubeconfig /nonexistent/kubeconfig"):
        api_client_for(KubernetesTargetConfig(kubeconfig_path="/nonexistent/kubeconfig"))
