from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from provenflow.blocks._config import core_config
from provenflow.deploy.kubernetes_config import KubernetesTargetConfig, api_client_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


class KubernetesTarget(Block):
    """Where provenflow deploys model servers in Kubernetes: namespace, size, exposure and connection.

    Connects with a kubeconfig file (`kubeconfig_path`), a kubeconfig's content kept as a secret
    (`kubeconfig`), the client's default lookup (`$KUBECONFIG`, then `~/.kube/config`) when neither is set,
    or the pod's service account (`in_cluster`).

    Example:
        ```python
        from provenflow.blocks.kubernetes import KubernetesTarget

        target = KubernetesTarget.load("BLOCK_NAME")
        api_client = target.get_api_client()
        config = target.config()
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow Kubernetes Target"
    _block_type_slug: ClassVar[str] = "provenflow-kubernetes-target"
    _description: ClassVar[str] = (
        "A Kubernetes cluster and namespace that provenflow deploys model servers to, with their size."
    )

    namespace: str = Field(default="default", description="Namespace the model server is deployed to.")
    replicas: int = Field(default=1, description="Number of model server pods (without autoscaling).")
    cpu_request: str = Field(default="250m", description="CPU each pod requests, e.g. 250m or 2.")
    cpu_limit: str | None = Field(default="1", description="CPU limit of each pod; empty for none.")
    memory_request: str = Field(default="256Mi", description="Memory each pod requests, e.g. 512Mi.")
    memory_limit: str | None = Field(default="1Gi", description="Memory limit of each pod; empty for none.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="How the Service exposes the model server."
    )
    service_port: int = Field(default=80, description="Port the Service listens on.")
    container_port: int = Field(
        default=8080, description="Port the model server listens on in its container."
    )
    hpa_min_replicas: int | None = Field(
        default=None, description="Autoscaling minimum; defaults to replicas when autoscaling is on."
    )
    hpa_max_replicas: int | None = Field(
        default=None, description="Autoscaling maximum; setting it adds a HorizontalPodAutoscaler."
    )
    hpa_target_cpu_percent: int = Field(
        default=80, description="Average CPU use, in percent of the request, that autoscaling aims for."
    )
    image_pull_secret: str | None = Field(
        default=None, description="Name of the Secret holding credentials for the image registry."
    )
    service_account: str | None = Field(
        default=None, description="Service account of the pods; none mounts no API token."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the model server."
    )
    readiness_timeout_seconds: float = Field(
        default=300.0, description="Seconds to wait for the rollout before rolling it back."
    )
    progress_deadline_seconds: int = Field(
        default=600, description="Seconds after which Kubernetes itself marks a stalled rollout as failed."
    )
    revision_history_limit: int = Field(
        default=10, description="Old revisions Kubernetes keeps for rollbacks."
    )
    in_cluster: bool = Field(
        default=False, description="Connect with the service account of the pod the flow runs in."
    )
    kubeconfig_path: str | None = Field(
        default=None, description="Path of a kubeconfig file to connect with."
    )
    kubeconfig: SecretStr | None = Field(
        default=None, description="Content of a kubeconfig file (YAML), instead of a path."
    )
    context: str | None = Field(
        default=None, description="Kubeconfig context to use; the current one if empty."
    )

    @model_validator(mode="after")
    def _valid(self) -> KubernetesTarget:
        self.config()  # every check lives on the config; a ConfigError is a ValueError for pydantic
        return self

    def config(self) -> KubernetesTargetConfig:
        """The target's settings as the core's frozen, validated config."""
        values = {name: getattr(self, name) for name in KubernetesTargetConfig.model_fields}
        return core_config("KubernetesTarget", KubernetesTargetConfig, values)

    def get_api_client(self) -> ApiClient:
        """A ``kubernetes.client.ApiClient`` connected as configured."""
        return api_client_for(self.config())
