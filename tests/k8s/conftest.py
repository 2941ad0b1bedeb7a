"""A fake Kubernetes API server per test, and what deploying to it needs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from provenflow.deploy.kubernetes import KubernetesTargetConfig
from tests.k8s.fake_apiserver import FakeKubernetes

REGISTRY = "registry.local:5000/models/penguins-sex"


def image(char: str) -> str:
    """A digest-pinned image reference, distinct per ``char``."""
    return f"{REGISTRY}@sha256:{char * 64}"


@pytest.fixture
def fake_k8s() -> Iterator[FakeKubernetes]:
    with FakeKubernetes(ready_delay=0.15, deadline_delay=0.3) as fake:
        yield fake


@pytest.fixture
def api_client(fake_k8s):
    client = fake_k8s.api_client()
    yield client
    client.close()


@pytest.fixture
def config() -> KubernetesTargetConfig:
    return KubernetesTargetConfig(namespace="models", replicas=2, readiness_timeout_seconds=10)


@pytest.fixture
def provenance() -> dict[str, str]:
    return {
        "model": "penguins-sex",
        "model-version": "3",
        "model-hash": "blake3:" + "4f" * 32,
        "training-run": "0b9f3c2e-5d6a-4e1f-9a7b-2c8d1e0f3a4b",
        "dataset": "penguins@f2ac45195997",
    }
