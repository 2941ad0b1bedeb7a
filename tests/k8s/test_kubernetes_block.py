"""The KubernetesTarget block: Prefect's block standards, the core config, and secrets kept secret."""

from __future__ import annotations

import pytest
from kubernetes import client
from pydantic import SecretStr

from provenflow.blocks.kubernetes import KubernetesTarget
from provenflow.deploy.kubernetes import KubernetesTargetConfig
from provenflow.errors import ConfigError
from tests.k8s.fake_apiserver import FakeKubernetes


def test_block_slug_never_changes():
    # The shared standards check is tests/test_blocks.py::test_block_standards.
    assert KubernetesTarget.get_block_type_slug() == "provenflow-kubernetes-target"


def test_the_block_carries_every_config_field():
    assert set(KubernetesTargetConfig.model_fields) <= set(KubernetesTarget.model_fields)
    for name, field in KubernetesTargetConfig.model_fields.items():
        default = field.get_default(call_default_factory=True)
        assert KubernetesTarget.model_fields[name].get_default(call_default_factory=True) == default, name


def test_config_round_trips():
    block = KubernetesTarget(namespace="models", replicas=3, hpa_max_replicas=6, env={"A": "1"})
    config = block.config()
    assert isinstance(config, KubernetesTargetConfig)
    assert (config.namespace, config.replicas, config.hpa_max_replicas, config.env) == (
        "models",
        3,
        6,
        {"A": "1"},
    )


def test_an_invalid_block_names_the_field():
    with pytest.raises(ValueError, match="memory_request: '4Gi' is more than memory_limit '1Gi'"):
        KubernetesTarget(memory_request="4Gi")
    block = KubernetesTarget()
    block.namespace = "Not Valid"  # blocks edited after construction are checked when used
    with pytest.raises(ConfigError, match="namespace: 'Not Valid' is not a valid Kubernetes name"):
        block.config()


def test_the_kubeconfig_secret_stays_secret(tmp_path):
    with FakeKubernetes(token="s3cret-token-value") as fake:
        content = fake.write_kubeconfig(tmp_path / "kubeconfig").read_text()
        block = KubernetesTarget(kubeconfig=SecretStr(content))
        assert "s3cret-token-value" not in repr(block)
        assert "s3cret-token-value" not in repr(block.config())
        api = block.get_api_client()
        assert client.VersionApi(api).get_code().major == "1"
    with pytest.raises(ValueError) as info:
        KubernetesTarget(kubeconfig=SecretStr(content), kubeconfig_path="/etc/kubeconfig")
    assert "set only one way to connect" in str(info.value)
    assert "s3cret-token-value" not in str(info.value)
