"""Where and how a model server runs in Kubernetes, and a client for that cluster.

``KubernetesTargetConfig`` is a frozen, self-validating value: a bad quantity, an HPA whose minimum
exceeds its maximum or two ways of connecting at once fail at construction, naming the field.
``api_client_for`` turns its connection settings into a ``kubernetes.client.ApiClient`` without touching
the client library's global default configuration.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from provenflow.errors import ConfigError

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# The schema version manifests are validated against when the caller does not name the cluster's.
DEFAULT_KUBERNETES_VERSION = "1.33"


def _quantity(field: str, value: str | None) -> str | None:
    from kubernetes.utils import parse_quantity

    if value is None:
        return None
    try:
        parse_quantity(value)
    except ValueError as error:
        raise ValueError(
            f"{field}: {value!r} is not a Kubernetes quantity ({error}); expected e.g. '250m', '2', '512Mi', '1Gi'"
        ) from None
    return value


class KubernetesTargetConfig(BaseModel):
    """Settings for one Kubernetes target: namespace, size, exposure, autoscaling and connection."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str = "default"
    replicas: int = Field(default=1, ge=0, le=1000)
    cpu_request: str = "250m"
    cpu_limit: str | None = "1"
    memory_request: str = "256Mi"
    memory_limit: str | None = "1Gi"
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = "ClusterIP"
    service_port: int = Field(default=80, ge=1, le=65535)
    container_port: int = Field(default=8080, ge=1, le=65535)
    hpa_min_replicas: int | None = Field(default=None, ge=1)
    hpa_max_replicas: int | None = Field(default=None, ge=1)
    hpa_target_cpu_percent: int = Field(default=80, ge=1, le=1000)
    image_pull_secret: str | None = None
    service_account: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    readiness_timeout_seconds: float = Field(default=300.0, gt=0)
    progress_deadline_seconds: int = Field(default=600, ge=1)
    revision_history_limit: int = Field(default=10, ge=1)
    in_cluster: bool = False
    kubeconfig_path: str | None = None
    kubeconfig: SecretStr | None = None
    context: str | None = None

    @field_validator("namespace", "image_pull_secret", "service_account")
    @classmethod
    def _dns_label(cls, value: str | None, info) -> str | None:
        if value is not None and (len(value) > 63 or not DNS1123_LABEL.match(value)):
            raise ValueError(
                f"{info.field_name}: {value!r} is not a valid Kubernetes name; expected at most 63 lowercase "
                "letters, digits and '-', starting and ending with a letter or digit"
            )
        return value

    @field_validator("cpu_request", "cpu_limit", "memory_request", "memory_limit")
    @classmethod
    def _quantities(cls, value: str | None, info) -> str | None:
        return _quantity(info.field_name, value)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not ENV_NAME.match(name):
                raise ValueError(
                    f"env: {name!r} is not a valid environment variable name; expected letters, digits, "
                    "'_', '-' and '.', not starting with a digit"
                )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KubernetesTargetConfig:
        from kubernetes.utils import parse_quantity

        for resource in ("cpu", "memory"):
            request, limit = getattr(self, f"{resource}_request"), getattr(self, f"{resource}_limit")
            if limit is not None and parse_quantity(request) > parse_quantity(limit):
                raise ValueError(
                    f"{resource}_request: {request!r} is more than {resource}_limit {limit!r}; "
                    "a request must not exceed its limit"
                )
        if self.hpa_min_replicas is not None and self.hpa_max_replicas is None:
            raise ValueError("hpa_min_replicas: set hpa_max_replicas too, to turn autoscaling on")
        if self.autoscaling and self.min_replicas > (self.hpa_max_replicas or 0):
            raise ValueError(
                f"hpa_min_replicas: {self.min_replicas} is more than hpa_max_replicas {self.hpa_max_replicas}"
            )
        ways = [name for name in ("in_cluster", "kubeconfig_path", "kubeconfig") if getattr(self, name)]
        if len(ways) > 1:
            raise ValueError(
                f"{ways[1]}: set only one way to connect, got {' and '.join(ways)}; "
                "use in_cluster inside a pod, kubeconfig_path or kubeconfig (its content) outside"
            )
        if self.context and self.in_cluster:
            raise ValueError("context: a kubeconfig context does not apply to an in-cluster connection")
        return self

    @property
    def autoscaling(self) -> bool:
        """Whether a HorizontalPodAutoscaler manages the replica count."""
        return self.hpa_max_replicas is not None

    @property
    def min_replicas(self) -> int:
        """The HPA's minimum: ``hpa_min_replicas``, else ``replicas`` (at least 1)."""
        return self.hpa_min_replicas if self.hpa_min_replicas is not None else max(self.replicas, 1)


def api_client_for(config: KubernetesTargetConfig) -> ApiClient:
    """A ``kubernetes.client.ApiClient`` for the target's cluster, leaving the library's globals alone.

    In-cluster: the pod's service account. Otherwise the kubeconfig content, the kubeconfig file, or the
    client's default lookup (``$KUBECONFIG``, then ``~/.kube/config``), with ``context`` if given.
    """
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        if config.in_cluster:
            kube_config.load_incluster_config(client_configuration=configuration)
        elif config.kubeconfig is not None:
            kube_config.load_kube_config_from_dict(
                _kubeconfig_dict(config.kubeconfig),
                context=config.context,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            kube_config.load_kube_config(
                config_file=config.kubeconfig_path,
                context=config.context,
                client_configuration=configuration,
                persist_config=False,
            )
    except (ConfigException, OSError) as error:
        where = (
            "in-cluster service account"
            if config.in_cluster
            else "kubeconfig content"
            if config.kubeconfig is not None
            else f"kubeconfig {config.kubeconfig_path or '(default: $KUBECONFIG or ~/.kube/config)'}"
        )
        context = f", context {config.context!r}" if config.context else ""
        raise ConfigError(
            f"Cannot load Kubernetes credentials from the {where}{context}: {error}. "
            "Check the target's kubeconfig_path/kubeconfig/context, or set in_cluster inside a pod."
        ) from None
    return client.ApiClient(configuration)


def _kubeconfig_dict(content: SecretStr) -> dict:
    try:
        loaded = yaml.safe_load(content.get_secret_value())
    except yaml.YAMLError as error:
        # The YAML error quotes the offending line, which may hold a token: say where, not what.
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"kubeconfig: the content is not valid YAML{where}.") from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            "kubeconfig: expected the content of a kubeconfig file (a YAML mapping with clusters, users, "
            f"contexts), got a {type(loaded).__name__}."
        )
    return loaded
