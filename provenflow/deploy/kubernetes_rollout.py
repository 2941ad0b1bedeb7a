"""Apply manifests through the official client, wait for the rollout, and undo a failed one.

Create or replace each object (Service, then Deployment, then HPA), wait until the Deployment's new
pods are all updated, ready and available, and on a failed or timed-out rollout put things back as they
were: the Deployment's pod template goes back to the previous revision's (found, as ``kubectl rollout
undo`` does, on the ReplicaSet whose ``deployment.kubernetes.io/revision`` annotation names it), objects
this deploy created are deleted, and objects it replaced get their previous spec back.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from provenflow.deploy.errors import DeployError, RolloutFailed
from provenflow.deploy.kubernetes_config import KubernetesTargetConfig
from provenflow.deploy.kubernetes_manifests import REVISION_ANNOTATION

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

_APPLY_ORDER = {"Service": 0, "Deployment": 1, "HorizontalPodAutoscaler": 2}


@dataclass(frozen=True)
class AppliedObject:
    """One object deploy sent to the cluster, and what happened to it."""

    kind: str
    name: str
    action: Literal["created", "replaced"]


@dataclass(frozen=True)
class DeployResult:
    """A finished rollout: where the model server answers and what was applied."""

    name: str
    namespace: str
    endpoint: str
    revision: int
    image: str
    applied: tuple[AppliedObject, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "namespace": self.namespace,
            "endpoint": self.endpoint,
            "revision": self.revision,
            "image": self.image,
            "applied": [{"kind": a.kind, "name": a.name, "action": a.action} for a in self.applied],
        }


@dataclass
class _Change:
    manifest: dict
    action: Literal["created", "replaced"]
    previous: dict | None  # the object as it was (plain dict), for a replaced one


@dataclass
class _Outcome:
    ready: bool
    reason: str = ""
    detail: str = ""
    status: dict = field(default_factory=dict)


class _Cluster:
    """The calls deploy needs, through the official client, with ApiException turned into DeployError."""

    def __init__(self, api_client: ApiClient, namespace: str) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.autoscaling = client.AutoscalingV2Api(api_client)

    def _calls(self, kind: str) -> dict[str, Callable]:
        if kind == "Deployment":
            api, suffix = self.apps, "deployment"
        elif kind == "Service":
            api, suffix = self.core, "service"
        elif kind == "HorizontalPodAutoscaler":
            api, suffix = self.autoscaling, "horizontal_pod_autoscaler"
        else:
            raise DeployError(
                f"Cannot deploy a {kind!r}: expected Deployment, Service or HorizontalPodAutoscaler."
            )
        return {
            verb: getattr(api, f"{verb}_namespaced_{suffix}")
            for verb in ("read", "create", "replace", "patch", "delete")
        }

    def call(self, what: str, function: Callable, *args, none_on: tuple[int, ...] = (), **kwargs) -> Any:
        """``function(*args, **kwargs)``; None for an HTTP status in ``none_on``; errors as DeployError."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return function(*args, **kwargs)
        except ApiException as error:
            if error.status in none_on:
                return None
            raise DeployError(f"{what} failed: {_api_error(error)}") from None
        except HTTPError as error:
            host = self.api_client.configuration.host
            raise DeployError(
                f"{what} failed: cannot reach the Kubernetes API at {host} ({type(error).__name__}). "
                "Check that the cluster is up and the target's kubeconfig/context points at it."
            ) from None

    def read(self, kind: str, name: str) -> dict | None:
        """The object as a plain dict, or None if it does not exist."""
        found = self.call(
            f"Reading {kind} {name!r} in namespace {self.namespace!r}",
            self._calls(kind)["read"],
            name,
            self.namespace,
            none_on=(404,),
        )
        return None if found is None else self.api_client.sanitize_for_serialization(found)

    def create(self, manifest: dict) -> dict:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        created = self.call(
            f"Creating {kind} {name!r} in namespace {self.namespace!r}",
            self._calls(kind)["create"],
            self.namespace,
            manifest,
        )
        return self.api_client.sanitize_for_serialization(created)

    def replace(self, manifest: dict) -> dict | None:
        """The replaced object, or None on a conflict (it changed since it was read: read it again)."""
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        replaced = self.call(
            f"Updating {kind} {name!r} in namespace {self.namespace!r}",
            self._calls(kind)["replace"],
            name,
            self.namespace,
            manifest,
            none_on=(409,),
        )
        return None if replaced is None else self.api_client.sanitize_for_serialization(replaced)

    def json_patch(self, kind: str, name: str, operations: list[dict]) -> dict:
        patched = self.call(
            f"Patching {kind} {name!r} in namespace {self.namespace!r}",
            self._calls(kind)["patch"],
            name,
            self.namespace,
            operations,  # a list body: the client sends application/json-patch+json
        )
        return self.api_client.sanitize_for_serialization(patched)

    def delete(self, kind: str, name: str) -> None:
        from kubernetes import client

        self.call(
            f"Deleting {kind} {name!r} in namespace {self.namespace!r}",
            self._calls(kind)["delete"],
            name,
            self.namespace,
            body=client.V1DeleteOptions(propagation_policy="Background"),
        )

    def replica_sets_of(self, deployment: dict) -> list[dict]:
        """The ReplicaSets the Deployment controls (matched by selector, then by owner uid)."""
        match_labels = deployment["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
        listed = self.call(
            f"Listing the ReplicaSets of Deployment {deployment['metadata']['name']!r}",
            self.apps.list_namespaced_replica_set,
            self.namespace,
            label_selector=selector,
        )
        uid = deployment["metadata"].get("uid")
        found = [self.api_client.sanitize_for_serialization(item) for item in listed.items]
        return [
            rs
            for rs in found
            if any(
                owner.get("uid") == uid and owner.get("controller")
                for owner in rs["metadata"].get("ownerReferences") or []
            )
        ]


def deploy(
    api_client: ApiClient,
    config: KubernetesTargetConfig,
    manifests: list[dict],
    timeout: float | None = None,
    *,
    poll_interval: float = 1.0,
) -> DeployResult:
    """Create or update the manifests, wait for the Deployment to roll out, undo it if it does not.

    ``timeout`` (seconds) defaults to ``config.readiness_timeout_seconds``. Raises ``RolloutFailed``
    (saying which condition failed and which revision was restored, or what was deleted) and
    ``DeployError`` for a request the API refused (also after undoing what was applied before it).
    """
    cluster = _Cluster(api_client, config.namespace)
    ordered = _check_manifests(manifests, config.namespace)
    deployment_manifest = next(m for m in ordered if m["kind"] == "Deployment")
    name = deployment_manifest["metadata"]["name"]
    previous_deployment = cluster.read("Deployment", name)
    previous_revision = _revision(previous_deployment)

    changes: list[_Change] = []
    try:
        for manifest in ordered:
            changes.append(_apply(cluster, manifest, config))
    except DeployError as error:
        undone = _undo(cluster, changes, previous_deployment, previous_revision)
        raise DeployError(f"{error} {undone.text}".strip()) from None

    outcome = _wait_for_rollout(cluster, name, timeout or config.readiness_timeout_seconds, poll_interval)
    if not outcome.ready:
        undone = _undo(cluster, changes, previous_deployment, previous_revision)
        raise RolloutFailed(
            f"Deployment {name!r} in namespace {config.namespace!r} did not become ready: {outcome.detail}. "
            f"{undone.text} See why with: kubectl -n {config.namespace} describe deployment {name}",
            reason=outcome.reason,
            rolled_back_to=undone.rolled_back_to,
            deleted=undone.deleted,
        )
    current = cluster.read("Deployment", name) or {}
    return DeployResult(
        name=name,
        namespace=config.namespace,
        endpoint=_endpoint(ordered, config.namespace),
        revision=_revision(current) or 0,
        image=deployment_manifest["spec"]["template"]["spec"]["containers"][0]["image"],
        applied=tuple(
            AppliedObject(c.manifest["kind"], c.manifest["metadata"]["name"], c.action) for c in changes
        ),
    )


def _check_manifests(manifests: list[dict], namespace: str) -> list[dict]:
    kinds = [m.get("kind") for m in manifests]
    if kinds.count("Deployment") != 1:
        raise DeployError(f"Expected exactly one Deployment among the manifests, got kinds {kinds}.")
    for manifest in manifests:
        if manifest.get("kind") not in _APPLY_ORDER:
            raise DeployError(
                f"Cannot deploy a {manifest.get('kind')!r}: expected Deployment, Service or "
                "HorizontalPodAutoscaler."
            )
        other = manifest["metadata"].get("namespace", namespace)
        if other != namespace:
            raise DeployError(
                f"{manifest['kind']} {manifest['metadata']['name']!r} is for namespace {other!r}, "
                f"but the target's namespace is {namespace!r}; render the manifests with the same config."
            )
    return sorted(manifests, key=lambda m: _APPLY_ORDER[m["kind"]])


def _apply(cluster: _Cluster, manifest: dict, config: KubernetesTargetConfig, attempts: int = 5) -> _Change:
    """Create the object, or replace it; a replace that conflicts (the object changed meanwhile,
    e.g. its controller wrote status) reads it again and retries."""
    kind, name = manifest["kind"], manifest["metadata"]["name"]
    for _ in range(attempts):
        existing = cluster.read(kind, name)
        if existing is None:
            cluster.create(manifest)
            return _Change(manifest, "created", None)
        if cluster.replace(_for_replace(manifest, existing, config)) is not None:
            return _Change(manifest, "replaced", existing)
    raise DeployError(
        f"Updating {kind} {name!r} in namespace {cluster.namespace!r} failed: it changed under us "
        f"{attempts} times in a row (HTTP 409 Conflict); something else keeps writing it. Deploy again."
    )


def _for_replace(manifest: dict, existing: dict, config: KubernetesTargetConfig) -> dict:
    """The manifest as a PUT body: optimistic concurrency, and what the cluster owns carried over."""
    body = copy.deepcopy(manifest)
    metadata, old_metadata = body["metadata"], existing["metadata"]
    metadata["resourceVersion"] = old_metadata["resourceVersion"]
    kept = {
        key: value
        for key, value in (old_metadata.get("annotations") or {}).items()
        if key.startswith("deployment.kubernetes.io/")
    }
    if kept:
        metadata["annotations"] = {**kept, **(metadata.get("annotations") or {})}
    if body["kind"] == "Service":
        for key in ("clusterIP", "clusterIPs"):  # immutable once allocated
            if key in existing.get("spec", {}):
                body["spec"].setdefault(key, existing["spec"][key])
    if body["kind"] == "Deployment" and config.autoscaling:
        # The HPA owns the replica count: an update must not reset it to the minimum.
        body["spec"]["replicas"] = existing["spec"].get("replicas", body["spec"]["replicas"])
    return body


def _wait_for_rollout(cluster: _Cluster, name: str, timeout: float, poll_interval: float) -> _Outcome:
    """Poll until the rollout is complete (as ``kubectl rollout status`` judges it), failed or timed out."""
    deadline = time.monotonic() + timeout
    while True:
        deployment = cluster.read("Deployment", name)
        if deployment is None:
            return _Outcome(False, "Deleted", "the Deployment was deleted while rolling out")
        outcome = _rollout_state(deployment)
        if outcome is not None:
            return outcome
        if time.monotonic() >= deadline:
            return _Outcome(
                False,
                "Timeout",
                f"not ready within {timeout:g} s ({_progress(deployment)})",
                deployment.get("status") or {},
            )
        time.sleep(poll_interval)


def _rollout_state(deployment: dict) -> _Outcome | None:
    """Ready, failed (with the condition's reason), or None while the rollout is still going."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    generation = deployment["metadata"].get("generation") or 0
    if (status.get("observedGeneration") or 0) < generation:
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded":
            return _Outcome(
                False,
                "ProgressDeadlineExceeded",
                f"condition Progressing={condition.get('status')}, reason ProgressDeadlineExceeded: "
                f"{condition.get('message') or 'no message'} ({_progress(deployment, skip='Progressing')})",
                status,
            )
    wanted = spec.get("replicas", 1)
    counts = [status.get(key) or 0 for key in ("updatedReplicas", "readyReplicas", "availableReplicas")]
    if all(count == wanted for count in counts) and (status.get("replicas") or 0) == wanted:
        return _Outcome(True, status=status)
    return None


def _progress(deployment: dict, skip: str = "") -> str:
    """'1/2 replicas updated; 3 pods, 2 ready, 2 available' and any failing condition but ``skip``."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    counts = {
        key: status.get(key) or 0
        for key in ("updatedReplicas", "replicas", "readyReplicas", "availableReplicas")
    }
    text = (
        f"{counts['updatedReplicas']}/{spec.get('replicas', 1)} replicas updated; {counts['replicas']} pods, "
        f"{counts['readyReplicas']} ready, {counts['availableReplicas']} available"
    )
    failing = [
        f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message')})"
        for c in status.get("conditions") or []
        if c.get("type") != skip
        and (
            (c.get("type") == "ReplicaFailure" and c.get("status") == "True")
            or (c.get("type") in ("Available", "Progressing") and c.get("status") == "False")
        )
    ]
    return text + ("; " + "; ".join(failing) if failing else "")


@dataclass
class _Undone:
    """What undoing did: a sentence for the error, the revision restored, the objects deleted."""

    text: str = ""
    rolled_back_to: int | None = None
    deleted: tuple[str, ...] = ()


def _undo(
    cluster: _Cluster, changes: list[_Change], previous_deployment: dict | None, previous_revision: int | None
) -> _Undone:
    """Put back what ``changes`` did, newest first, and say what was done (and what failed)."""
    undone = _Undone()
    done: list[str] = []
    failed: list[str] = []
    for change in reversed(changes):
        kind, name = change.manifest["kind"], change.manifest["metadata"]["name"]
        try:
            if change.action == "created":
                cluster.delete(kind, name)
                undone.deleted += (f"{kind}/{name}",)
                done.append(f"deleted the new {kind} {name!r}")
            elif kind == "Deployment":
                done.append(_roll_back(cluster, name, previous_deployment or {}, previous_revision))
                undone.rolled_back_to = previous_revision
            else:
                _restore(cluster, kind, name, change.previous or {})
                done.append(f"restored the previous {kind} {name!r}")
        except DeployError as error:
            failed.append(str(error))
    undone.text = ("Undone: " + "; ".join(done) + ".") if done else ""
    if failed:
        undone.text += " Undoing failed too, fix by hand: " + " ".join(failed)
    return undone


def _roll_back(cluster: _Cluster, name: str, previous: dict, revision: int | None) -> str:
    """Restore the previous revision's pod template, as ``kubectl rollout undo`` does (a JSON patch)."""
    current = cluster.read("Deployment", name)
    if current is None:
        raise DeployError(f"Cannot roll back Deployment {name!r}: it no longer exists.")
    template = None
    if revision is not None:
        for rs in cluster.replica_sets_of(current):
            if _revision(rs) == revision:
                template = copy.deepcopy(rs["spec"]["template"])
                (template.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
                break
    source = f"revision {revision}"
    if template is None:  # no ReplicaSet left for it: fall back to the template read before the update
        template = copy.deepcopy((previous.get("spec") or {}).get("template"))
        source = f"the pod template it had before this deploy (revision {revision}, its ReplicaSet is gone)"
        if template is None:
            raise DeployError(f"Cannot roll back Deployment {name!r}: no previous pod template is known.")
    cluster.json_patch("Deployment", name, [{"op": "replace", "path": "/spec/template", "value": template}])
    images = ", ".join(c.get("image", "?") for c in template.get("spec", {}).get("containers", []))
    return f"rolled Deployment {name!r} back to {source} (image {images})"


def _restore(cluster: _Cluster, kind: str, name: str, previous: dict) -> None:
    for _ in range(5):
        current = cluster.read(kind, name)
        if current is None:
            raise DeployError(f"Cannot restore {kind} {name!r}: it no longer exists.")
        if cluster.replace(_restored(kind, name, cluster.namespace, previous, current)) is not None:
            return
    raise DeployError(f"Cannot restore {kind} {name!r}: it kept changing (HTTP 409 Conflict).")


def _restored(kind: str, name: str, namespace: str, previous: dict, current: dict) -> dict:
    return {
        "apiVersion": previous.get("apiVersion") or current.get("apiVersion"),
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": (previous.get("metadata") or {}).get("labels") or {},
            "annotations": (previous.get("metadata") or {}).get("annotations") or {},
            "resourceVersion": current["metadata"]["resourceVersion"],
        },
        "spec": previous.get("spec") or {},
    }


def _revision(obj: dict | None) -> int | None:
    if not obj:
        return None
    value = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _endpoint(manifests: list[dict], namespace: str) -> str:
    service = next((m for m in manifests if m["kind"] == "Service"), None)
    if service is None:
        raise DeployError("Expected a Service among the manifests, to give the model server an endpoint.")
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['metadata']['name']}.{namespace}.svc.cluster.local:{port}"


def _api_error(error) -> str:
    """'HTTP 422 Invalid: <the API server's message>' from an ApiException, without headers."""
    message = ""
    reason = error.reason or ""
    try:
        body = json.loads(error.body or "")
        message = body.get("message", "")
        reason = body.get("reason") or reason
    except (TypeError, ValueError, AttributeError):
        message = (error.body or "")[:500] if isinstance(error.body, str) else ""
    hint = {
        401: " Check the credentials in the target's kubeconfig.",
        403: " The credentials lack permission (RBAC) for this; grant it to the user or service account.",
        404: " Check that the namespace exists.",
        409: " Someone else changed it meanwhile; deploy again.",
    }.get(error.status, "")
    return f"HTTP {error.status} {reason}: {message or 'no message'}.{hint}"
