"""Rendering: names, labels, pinned images, and every manifest valid against the official schemas."""

from __future__ import annotations

import copy
import re

import pytest

from provenflow.deploy.kubernetes import (
    KubernetesTargetConfig,
    ManifestInvalid,
    provenance_metadata,
    render_manifests,
    resource_name,
    validate_manifests,
)
from provenflow.errors import ConfigError
from tests.k8s.conftest import image


def _by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {m["kind"]: m for m in manifests}


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("penguins-sex", "3"), "penguins-sex-3"),
        (("Penguins_Sex", "12"), "penguins-sex-12"),
        (("7-day churn", "1"), "m-7-day-churn-1"),
        (("a..b//c",), "a-b-c"),
    ],
)
def test_resource_names_are_dns_labels(parts, expected):
    assert resource_name(*parts) == expected


def test_long_names_are_cut_with_a_hash_that_keeps_them_apart():
    first = resource_name("x" * 80, "1")
    second = resource_name("x" * 80, "2")
    assert len(first) == len(second) == 63
    assert first != second
    assert resource_name(first) == first  # idempotent


def test_a_name_without_letters_or_digits_is_refused():
    with pytest.raises(ConfigError, match="Kubernetes name"):
        resource_name("---", "")


def test_provenance_splits_into_labels_and_annotations(provenance):
    labels, annotations = provenance_metadata(provenance)
    assert labels["provenflow.io/model"] == "penguins-sex"
    assert labels["provenflow.io/model-version"] == "3"
    assert labels["provenflow.io/training-run"] == provenance["training-run"]
    # too long for a label: the exact value only as an annotation
    assert "provenflow.io/model-hash" not in labels
    assert annotations["provenflow.io/model-hash"] == provenance["model-hash"]
    # '@' is not allowed in a label: sanitized label, exact annotation
    assert labels["provenflow.io/dataset"] == "penguins-f2ac45195997"
    assert annotations["provenflow.io/dataset"] == "penguins@f2ac45195997"


def test_every_rendered_manifest_passes_the_official_schema(provenance):
    config = KubernetesTargetConfig(
        namespace="models",
        replicas=2,
        hpa_max_replicas=6,
        image_pull_secret="registry-credentials",
        service_account="model-server",
        service_type="NodePort",
        env={"LOG_LEVEL": "info"},
    )
    manifests = render_manifests(config, "penguins-sex-3", image("a"), provenance, {"WORKERS": "2"})
    assert [m["kind"] for m in manifests] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    for version in ("1.29", "1.33"):
        validate_manifests(manifests, kubernetes_version=version)


def test_the_deployment_is_locked_down_and_probed(config, provenance):
    deployment = _by_kind(render_manifests(config, "penguins-sex-3", image("a"), provenance, {"A": "1"}))[
        "Deployment"
    ]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["metadata"]["name"] == "penguins-sex-3"
    assert deployment["metadata"]["namespace"] == "models"
    assert spec["replicas"] == 2 and spec["revisionHistoryLimit"] == 10
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["selector"]["matchLabels"] == {"app.kubernetes.io/instance": "penguins-sex-3"}
    assert container["image"] == image("a")
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp" and "emptyDir" in pod["volumes"][0]
    assert pod["automountServiceAccountToken"] is False
    assert container["env"] == [{"name": "A", "value": "1"}]
    template_labels = spec["template"]["metadata"]["labels"]
    assert template_labels["provenflow.io/model-version"] == "3"
    assert spec["template"]["metadata"]["annotations"]["provenflow.io/model-hash"] == provenance["model-hash"]


def test_call_env_overrides_target_env(provenance):
    config = KubernetesTargetConfig(env={"A": "target", "B": "target"})
    deployment = render_manifests(config, "m", image("a"), provenance, {"B": "call"})[0]
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "target"}, {"name": "B", "value": "call"}]


def test_service_and_autoscaler(provenance):
    config = KubernetesTargetConfig(
        replicas=3, hpa_min_replicas=2, hpa_max_replicas=8, hpa_target_cpu_percent=60
    )
    kinds = _by_kind(render_manifests(config, "penguins-sex-3", image("a"), provenance, {}))
    service = kinds["Service"]["spec"]
    assert service["selector"] == {"app.kubernetes.io/instance": "penguins-sex-3"}
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "penguins-sex-3"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    assert kinds["Deployment"]["spec"]["replicas"] == 2  # the HPA's minimum to start with


def test_no_autoscaler_unless_asked(config, provenance):
    kinds = [m["kind"] for m in render_manifests(config, "m", image("a"), provenance, {})]
    assert kinds == ["Deployment", "Service"]


@pytest.mark.parametrize(
    "reference",
    [
        "registry.local:5000/models/penguins-sex:3",
        "registry.local:5000/models/penguins-sex",
        "penguins-sex:latest",
    ],
)
def test_a_tag_only_image_is_refused(config, provenance, reference):
    with pytest.raises(ConfigError, match="not pinned by digest") as info:
        render_manifests(config, "m", reference, provenance, {})
    assert reference in str(info.value) and "@sha256:" in str(info.value)


@pytest.mark.parametrize(
    "reference",
    [
        "registry.local:5000/models/penguins-sex@sha256:abc",
        "Registry.local/Models@sha256:" + "a" * 64,
        "registry.local/models@md5:" + "a" * 32,
    ],
)
def test_a_malformed_digest_reference_is_refused(config, provenance, reference):
    with pytest.raises(ConfigError, match="not a valid digest reference"):
        render_manifests(config, "m", reference, provenance, {})


def test_tag_and_digest_together_are_accepted(config, provenance):
    pinned = "registry.local:5000/models/penguins-sex:3@sha256:" + "b" * 64
    deployment = render_manifests(config, "m", pinned, provenance, {})[0]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == pinned


def test_a_broken_manifest_is_rejected_naming_the_field(config, provenance):
    manifests = render_manifests(config, "penguins-sex-3", image("a"), provenance, {})
    broken = copy.deepcopy(manifests)
    broken[0]["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(ManifestInvalid) as info:
        validate_manifests(broken)
    error = info.value
    assert error.field == "spec.template.spec.containers[0].ports[0].containerPort"
    assert error.kind == "Deployment" and error.name == "penguins-sex-3"
    assert "spec.template.spec.containers[0].ports[0].containerPort" in str(error)
    assert "'8080' is not of type 'integer'" in str(error)


def test_an_unknown_field_is_rejected_in_strict_mode(config, provenance):
    manifests = render_manifests(config, "penguins-sex-3", image("a"), provenance, {})
    manifests[1]["spec"]["replica"] = 2
    with pytest.raises(ManifestInvalid, match=r"Service 'penguins-sex-3' is invalid at spec: .*'replica'"):
        validate_manifests(manifests)


def test_an_unsupported_schema_version_is_a_config_error(config, provenance):
    manifests = render_manifests(config, "m", image("a"), provenance, {})
    with pytest.raises(ConfigError, match=r"kubernetes_version '9\.99'"):
        validate_manifests(manifests, kubernetes_version="9.99")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"namespace": "Models"}, "namespace: 'Models' is not a valid Kubernetes name"),
        ({"cpu_request": "lots"}, "cpu_request: 'lots' is not a Kubernetes quantity"),
        ({"memory_request": "2Gi", "memory_limit": "1Gi"}, "memory_request: '2Gi' is more than memory_limit"),
        (
            {"hpa_min_replicas": 3, "hpa_max_replicas": 2},
            "hpa_min_replicas: 3 is more than hpa_max_replicas 2",
        ),
        ({"hpa_min_replicas": 3}, "hpa_min_replicas: set hpa_max_replicas too"),
        ({"env": {"1BAD": "x"}}, "env: '1BAD' is not a valid environment variable name"),
        ({"in_cluster": True, "kubeconfig_path": "/k"}, "set only one way to connect"),
        ({"replicas": -1}, "greater than or equal to 0"),
    ],
)
def test_config_errors_name_the_field(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        KubernetesTargetConfig(**values)
