"""The Kubernetes objects that serve one model: a Deployment, a Service and an optional HPA.

Pure functions from a ``KubernetesTargetConfig`` and a digest-pinned image to plain manifest dicts, plus
their validation against the official schemas (``kubernetes-validate``, strict: unknown fields fail).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from provenflow.deploy.errors import ConfigError, ManifestInvalid
from provenflow.deploy.kubernetes_config import DEFAULT_KUBERNETES_VERSION, KubernetesTargetConfig

LABEL_PREFIX = "provenflow.io/"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
INSTANCE_LABEL = "app.kubernetes.io/instance"
RUN_AS_USER = 10001
MAX_NAME = 63

_IMAGE = re.compile(
    r"^(?P<repository>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@(?P<digest>sha256:[0-9a-f]{64})$"
)
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def resource_name(*parts: str) -> str:
    """A DNS-1035 label (valid for Deployments and Services) from e.g. a model name and version.

    Lowercased, runs of other characters become '-', prefixed with 'm-' when it would not start with a
    letter; longer than 63 characters, it is cut and ends with a short hash of the whole, so that two long
    names stay apart. ``resource_name("Penguins_Sex", "3")`` is ``"penguins-sex-3"``.
    """
    joined = "-".join(part for part in parts if part)
    name = re.sub(r"[^a-z0-9]+", "-", joined.lower()).strip("-")
    if not name:
        raise ConfigError(
            f"Cannot make a Kubernetes name from {parts!r}: expected at least one letter or digit."
        )
    if not name[0].isalpha():
        name = f"m-{name}"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(joined.encode()).hexdigest()[:8]
        name = f"{name[: MAX_NAME - 9].rstrip('-')}-{digest}"
    return name


def check_pinned_image(image: str) -> str:
    """The image reference if it is pinned by digest (``repo[:tag]@sha256:<64 hex>``); else ConfigError."""
    if _IMAGE.match(image):
        return image
    if "@" not in image:
        raise ConfigError(
            f"Image {image!r} is not pinned by digest: a tag can move to other bytes, so the cluster could "
            "run something else than what was released. Expected REPOSITORY@sha256:<64 hex digits>; use the "
            "digest recorded by `provenflow release`."
        )
    raise ConfigError(
        f"Image {image!r} is not a valid digest reference; expected a lowercase REPOSITORY[:TAG]@sha256:"
        "<64 lowercase hex digits>, e.g. registry.local:5000/models/penguins@sha256:3f1c…"
    )


def provenance_metadata(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split provenance facts into (labels, annotations), each key under ``provenflow.io/``.

    A value that is a valid label value (at most 63 characters of letters, digits, '-', '_', '.') becomes
    a label as is. Otherwise the exact value goes to an annotation, and a label carries its sanitized
    form when that still fits; a model hash (64 hex digits and more) is annotation-only.
    """
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    for key, raw in values.items():
        full_key = _label_key(key)
        value = str(raw)
        if _LABEL_VALUE.match(value) and len(value) <= MAX_NAME:
            labels[full_key] = value
            continue
        annotations[full_key] = value
        sanitized = re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-_.")
        if sanitized and len(sanitized) <= MAX_NAME and _LABEL_VALUE.match(sanitized):
            labels[full_key] = sanitized
    return labels, annotations


def _label_key(key: str) -> str:
    prefix, _, name = key.rpartition("/")
    prefix = prefix or LABEL_PREFIX.rstrip("/")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-_.")[:MAX_NAME].rstrip("-_.")
    if not name or not _LABEL_NAME.match(name):
        raise ConfigError(
            f"Label key {key!r} has no usable name; expected letters, digits, '-', '_' or '.', "
            "e.g. 'model-version'."
        )
    return f"{prefix}/{name}"


def render_manifests(
    config: KubernetesTargetConfig,
    app_name: str,
    image: str,
    labels: Mapping[str, str],
    env: Mapping[str, str],
) -> list[dict]:
    """The Deployment, Service and (if autoscaling is on) HorizontalPodAutoscaler for one model server.

    ``app_name`` is made a valid name with ``resource_name``; ``image`` must be pinned by digest;
    ``labels`` are provenance facts (model name, version, hash, training run…), sanitized into labels and
    annotations by ``provenance_metadata``; ``env`` adds to (and overrides) the target's ``env``.
    """
    name = resource_name(app_name)
    check_pinned_image(image)
    extra_labels, annotations = provenance_metadata(labels)
    common = {
        "app.kubernetes.io/name": name,
        INSTANCE_LABEL: name,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "provenflow",
        **extra_labels,
    }
    manifests = [
        _deployment(config, name, image, common, annotations, {**config.env, **env}),
        _service(config, name, common, annotations),
    ]
    if config.autoscaling:
        manifests.append(_autoscaler(config, name, common, annotations))
    return manifests


def _metadata(config: KubernetesTargetConfig, name: str, labels: dict, annotations: dict) -> dict:
    metadata = {"name": name, "namespace": config.namespace, "labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _resources(config: KubernetesTargetConfig) -> dict:
    resources: dict = {"requests": {"cpu": config.cpu_request, "memory": config.memory_request}}
    limits = {"cpu": config.cpu_limit, "memory": config.memory_limit}
    limits = {key: value for key, value in limits.items() if value is not None}
    if limits:
        resources["limits"] = limits
    return resources


def _container(config: KubernetesTargetConfig, image: str, env: Mapping[str, str]) -> dict:
    def probe(path: str, delay: int, period: int) -> dict:
        return {
            "httpGet": {"path": path, "port": "http"},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        }

    container: dict = {
        "name": "model-server",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": config.container_port, "protocol": "TCP"}],
        "readinessProbe": probe("/ready", 2, 5),
        "livenessProbe": probe("/health", 10, 10),
        "resources": _resources(config),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if env:
        container["env"] = [{"name": key, "value": str(value)} for key, value in sorted(env.items())]
    return container


def _deployment(
    config: KubernetesTargetConfig,
    name: str,
    image: str,
    labels: dict,
    annotations: dict,
    env: Mapping[str, str],
) -> dict:
    pod_spec: dict = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": config.service_account is not None,
        "containers": [_container(config, image, env)],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        "terminationGracePeriodSeconds": 30,
    }
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account
    if config.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": config.image_pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(config, name, labels, annotations),
        "spec": {
            "replicas": config.min_replicas if config.autoscaling else config.replicas,
            "revisionHistoryLimit": config.revision_history_limit,
            "progressDeadlineSeconds": config.progress_deadline_seconds,
            "selector": {"matchLabels": {INSTANCE_LABEL: name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {"metadata": _pod_metadata(labels, annotations), "spec": pod_spec},
        },
    }


def _pod_metadata(labels: dict, annotations: dict) -> dict:
    metadata: dict = {"labels": dict(labels)}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return metadata


def _service(config: KubernetesTargetConfig, name: str, labels: dict, annotations: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(config, name, labels, annotations),
        "spec": {
            "type": config.service_type,
            "selector": {INSTANCE_LABEL: name},
            "ports": [{"name": "http", "port": config.service_port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def _autoscaler(config: KubernetesTargetConfig, name: str, labels: dict, annotations: dict) -> dict:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(config, name, labels, annotations),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": config.min_replicas,
            "maxReplicas": config.hpa_max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": config.hpa_target_cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def validate_manifests(manifests: list[dict], kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> None:
    """Check every manifest against the official schema of its kind (strict: no unknown fields).

    Raises ``ManifestInvalid`` naming the kind, the object, the dotted field path and the problem.
    """
    for manifest in manifests:
        validate_manifest(manifest, kubernetes_version)


def validate_manifest(manifest: dict, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> None:
    """``validate_manifests`` for one manifest."""
    try:
        import kubernetes_validate
    except ImportError:  # a dev dependency: deploying works without it, validating does not
        raise ConfigError(
            "Validating manifests needs the kubernetes-validate package: pip install kubernetes-validate"
        ) from None
    _check_schema_version(kubernetes_version)
    kind = manifest.get("kind", "?")
    name = (manifest.get("metadata") or {}).get("name", "?")
    try:
        kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        field = field_path(error.path)
        raise ManifestInvalid(
            f"{kind} {name!r} is invalid at {field or '(top level)'}: {error.message} "
            f"(checked against the Kubernetes {error.version} schema)",
            kind=kind,
            name=name,
            field=field,
        ) from None
    except kubernetes_validate.SchemaNotFoundError as error:
        raise ManifestInvalid(
            f"{kind} {name!r}: {error.message}; expected one of apps/v1 Deployment, v1 Service, "
            "autoscaling/v2 HorizontalPodAutoscaler",
            kind=kind,
            name=name,
            field="apiVersion",
        ) from None


def field_path(path) -> str:
    """``spec.template.spec.containers[0].image`` from a jsonschema path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _check_schema_version(kubernetes_version: str) -> None:
    from kubernetes_validate.utils import all_versions

    supported = sorted({_minor(v) for v in all_versions()})
    wanted = _minor(kubernetes_version) if re.match(r"^v?\d+\.\d+(\.\d+)?$", kubernetes_version) else None
    if wanted is None or not supported[0] <= wanted <= supported[-1]:
        names = ", ".join(f"{major}.{minor}" for major, minor in supported)
        raise ConfigError(
            f"kubernetes_version {kubernetes_version!r} has no schema in kubernetes-validate; "
            f"expected MAJOR.MINOR, one of {names} (the cluster's version, see `kubectl version`)"
        )


def _minor(version: str) -> tuple[int, int]:
    major, minor = version.lstrip("v").split(".")[:2]
    return int(major), int(minor)
