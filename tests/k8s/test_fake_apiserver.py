"""The fake API server answers like a real one where deploy depends on it (so its tests mean something)."""

from __future__ import annotations

import json
import time

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from provenflow.deploy.kubernetes import render_manifests
from tests.k8s.conftest import image

NS = "models"


@pytest.fixture
def manifests(config, provenance) -> dict[str, dict]:
    return {m["kind"]: m for m in render_manifests(config, "penguins-sex", image("a"), provenance, {})}


def _status(error: ApiException) -> dict:
    body = json.loads(error.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == error.status
    return body


def test_missing_objects_are_404_statuses(api_client):
    with pytest.raises(ApiException) as info:
        client.AppsV1Api(api_client).read_namespaced_deployment("nope", NS)
    body = _status(info.value)
    assert info.value.status == 404
    assert (body["reason"], body["message"]) == ("NotFound", 'deployments.apps "nope" not found')
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}


def test_an_object_that_breaks_the_schema_is_422_naming_the_field(api_client, manifests):
    broken = manifests["Deployment"]
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = ["Always"]
    with pytest.raises(ApiException) as info:
        client.AppsV1Api(api_client).create_namespaced_deployment(NS, broken)
    body = _status(info.value)
    assert info.value.status == 422 and body["reason"] == "Invalid"
    field = "spec.template.spec.containers[0].imagePullPolicy"
    assert body["message"].startswith(f'Deployment.apps "penguins-sex" is invalid: {field}: ')
    assert body["details"]["causes"][0]["field"] == field


def test_unknown_fields_invalid_names_and_mismatched_selectors_are_422(api_client, manifests):
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    service = manifests["Service"]
    service["spec"]["portz"] = []
    with pytest.raises(ApiException, match="portz"):
        core.create_namespaced_service(NS, service)
    del service["spec"]["portz"]
    service["metadata"]["name"] = "9-lives"  # a Service name must start with a letter
    with pytest.raises(ApiException, match=r"metadata\.name") as info:
        core.create_namespaced_service(NS, service)
    assert info.value.status == 422
    deployment = manifests["Deployment"]
    deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] = "other"
    with pytest.raises(ApiException, match="`selector` does not match template `labels`"):
        apps.create_namespaced_deployment(NS, deployment)


def test_create_twice_is_409_and_stale_updates_conflict(api_client, manifests):
    apps = client.AppsV1Api(api_client)
    created = apps.create_namespaced_deployment(NS, manifests["Deployment"])
    assert created.metadata.generation == 1 and created.metadata.uid
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment(NS, manifests["Deployment"])
    assert (info.value.status, _status(info.value)["reason"]) == (409, "AlreadyExists")

    stale = dict(
        manifests["Deployment"], metadata={**manifests["Deployment"]["metadata"], "resourceVersion": "1"}
    )
    with pytest.raises(ApiException) as info:
        apps.replace_namespaced_deployment("penguins-sex", NS, stale)
    assert (info.value.status, _status(info.value)["reason"]) == (409, "Conflict")


def test_the_selector_is_immutable_and_generation_follows_the_spec(api_client, manifests):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(NS, manifests["Deployment"])
    labels_only = apps.patch_namespaced_deployment(
        "penguins-sex", NS, [{"op": "add", "path": "/metadata/labels/team", "value": "ml"}]
    )
    assert labels_only.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment(
        "penguins-sex", NS, {"spec": {"replicas": 4}}, _content_type="application/merge-patch+json"
    )
    assert (scaled.metadata.generation, scaled.spec.replicas) == (2, 4)
    with pytest.raises(ApiException, match=r"spec.selector: Invalid value: field is immutable"):
        apps.patch_namespaced_deployment(
            "penguins-sex",
            NS,
            {
                "spec": {
                    "selector": {"matchLabels": {"x": "y"}},
                    "template": {"metadata": {"labels": {"x": "y"}}},
                }
            },
            _content_type="application/merge-patch+json",
        )


def test_replica_sets_are_listed_by_label_selector_and_deleted_with_their_deployment(
    fake_k8s, api_client, manifests
):
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(NS, manifests["Deployment"])
    selector = "app.kubernetes.io/instance=penguins-sex"
    for _ in range(100):
        listed = apps.list_namespaced_replica_set(NS, label_selector=selector).items
        if listed:
            break
        time.sleep(0.02)
    (replica_set,) = listed
    assert replica_set.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert replica_set.metadata.owner_references[0].kind == "Deployment"
    assert apps.list_namespaced_replica_set(NS, label_selector="app.kubernetes.io/instance=other").items == []
    apps.delete_namespaced_deployment("penguins-sex", NS)
    assert apps.list_namespaced_replica_set(NS).items == []


def test_services_keep_their_cluster_ip_and_hpas_round_trip(api_client, provenance):
    from provenflow.deploy.kubernetes import KubernetesTargetConfig

    config = KubernetesTargetConfig(namespace=NS, hpa_max_replicas=4)
    kinds = {m["kind"]: m for m in render_manifests(config, "penguins-sex", image("a"), provenance, {})}
    core = client.CoreV1Api(api_client)
    created = core.create_namespaced_service(NS, kinds["Service"])
    assert created.spec.cluster_ip.startswith("10.96.")
    replaced = core.replace_namespaced_service("penguins-sex", NS, kinds["Service"])
    assert replaced.spec.cluster_ip == created.spec.cluster_ip
    hpa = client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(
        NS, kinds["HorizontalPodAutoscaler"]
    )
    assert hpa.spec.max_replicas == 4 and hpa.spec.metrics[0].resource.target.average_utilization == 80


def test_version(api_client):
    assert client.VersionApi(api_client).get_code().git_version == "v1.33.0-fake"
