"""Deploy a released model image to Kubernetes: configure, render, validate, apply and roll out.

    config = KubernetesTargetConfig(namespace="models", replicas=2, hpa_max_replicas=5)
    manifests = render_manifests(config, resource_name("penguins-sex", "3"), image, labels, env={})
    validate_manifests(manifests)
    result = deploy(api_client_for(config), config, manifests)   # DeployResult, or RolloutFailed

Plain Python without Prefect: the ``deploy`` flow and the CLI wire these to the KubernetesTarget block
and the ledger.
"""

from __future__ import annotations

from provenflow.deploy.errors import DeployError, ManifestInvalid, RolloutFailed
from provenflow.deploy.kubernetes_config import (
    DEFAULT_KUBERNETES_VERSION,
    KubernetesTargetConfig,
    api_client_for,
)
from provenflow.deploy.kubernetes_manifests import (
    check_pinned_image,
    provenance_metadata,
    render_manifests,
    resource_name,
    validate_manifests,
)
from provenflow.deploy.kubernetes_rollout import AppliedObject, DeployResult, deploy

__all__ = [
    "DEFAULT_KUBERNETES_VERSION",
    "AppliedObject",
    "DeployError",
    "DeployResult",
    "KubernetesTargetConfig",
    "ManifestInvalid",
    "RolloutFailed",
    "api_client_for",
    "check_pinned_image",
    "deploy",
    "provenance_metadata",
    "render_manifests",
    "resource_name",
    "validate_manifests",
]
