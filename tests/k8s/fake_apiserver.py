"""A stateful fake Kubernetes API server over real HTTP on 127.0.0.1, enough for the official client.

It serves, per namespace: apps/v1 deployments and replicasets (list with a label selector), v1 services
and autoscaling/v2 horizontalpodautoscalers — GET (one or a list), POST, PUT, PATCH (JSON patch,
merge patch; a strategic merge patch is applied as a merge patch) and DELETE — and ``/version``. Errors
are Kubernetes ``Status`` objects: 404 NotFound, 409 AlreadyExists/Conflict, 400 BadRequest, 415, and 422
Invalid for an object that breaks the official schema (``kubernetes-validate``, strict), an invalid name,
a selector that does not match its template, or a change to an immutable field.

A small deployment controller runs in a thread: after a Deployment is created or its spec changes it
bumps nothing itself (the API bumps ``metadata.generation``), then adopts or creates the ReplicaSet for
the pod template with the next ``deployment.kubernetes.io/revision``, reports the new pods as updated
but not ready, and after ``ready_delay`` seconds as ready and available — unless an image is in
``never_ready_images`` (or the pod template sets ``FAKE_NEVER_READY=true``): then after
``deadline_delay`` seconds the Progressing condition turns False with reason ProgressDeadlineExceeded.
Images in ``stuck_images`` never become ready and never time out (a client must give up by itself).

    with FakeKubernetes() as fake:
        api_client = fake.api_client()      # a kubernetes.client.ApiClient pointed at it
        fake.never_ready_images.add(image)
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REVISION = "deployment.kubernetes.io/revision"
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_PATH = re.compile(
    r"^/(?P<prefix>api/v1|apis/[^/]+/[^/]+)/namespaces/(?P<namespace>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?/?$"
)


@dataclass(frozen=True)
class Resource:
    kind: str
    api_version: str
    plural: str
    has_generation: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def qualified(self) -> str:
        """``deployments.apps``, ``services``: how the API server names a resource in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


RESOURCES = {
    ("apis/apps/v1", "deployments"): Resource("Deployment", "apps/v1", "deployments", True),
    ("apis/apps/v1", "replicasets"): Resource("ReplicaSet", "apps/v1", "replicasets", True),
    ("api/v1", "services"): Resource("Service", "v1", "services", False),
    ("apis/autoscaling/v2", "horizontalpodautoscalers"): Resource(
        "HorizontalPodAutoscaler", "autoscaling/v2", "horizontalpodautoscalers", True
    ),
}
DEPLOYMENTS = RESOURCES[("apis/apps/v1", "deployments")]
REPLICASETS = RESOURCES[("apis/apps/v1", "replicasets")]


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def status(self) -> dict:
        return _status(self.code, "Failure", self.reason, self.message, self.details)


def _status(code: int, outcome: str, reason: str, message: str, details: dict | None = None) -> dict:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": outcome, "code": code}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if details:
        body["details"] = details
    return body


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _invalid(resource: Resource, name: str, field: str, message: str) -> ApiError:
    return ApiError(
        422,
        "Invalid",
        f'{resource.kind}{"." + resource.group if resource.group else ""} "{name}" is invalid: {field}: {message}',
        {
            "name": name,
            "group": resource.group,
            "kind": resource.kind,
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
        },
    )


class FakeKubernetes:
    """The fake API server and its deployment controller; a context manager that starts and stops both."""

    def __init__(
        self,
        *,
        kubernetes_version: str = "1.33",
        ready_delay: float = 0.2,
        deadline_delay: float = 0.4,
        token: str | None = None,
    ) -> None:
        self.kubernetes_version = kubernetes_version
        self.ready_delay = ready_delay
        self.deadline_delay = deadline_delay
        self.token = token
        self.never_ready_images: set[str] = set()
        self.stuck_images: set[str] = set()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self._injected: list[tuple[str, str, ApiError]] = []
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._lock = threading.RLock()
        self._versions = itertools.count(1000)
        self._ips = itertools.count(10)
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._queue_ready = threading.Condition(self._lock)
        self._sequence = itertools.count()
        self._stopping = False
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle ---------------------------------------------------------------------------------

    def start(self) -> FakeKubernetes:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="fake-apiserver", daemon=True
            ),
            threading.Thread(target=self._run_controller, name="fake-controller", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._queue_ready.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def api_client(self):
        """An official ``kubernetes.client.ApiClient`` pointed at this server."""
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.url
        if self.token:
            configuration.api_key = {"authorization": self.token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)

    def write_kubeconfig(self, path: Path, context: str = "fake") -> Path:
        """A kubeconfig file whose ``context`` points at this server (with the token, if one is set)."""
        user = {"token": self.token} if self.token else {}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": user}],
            "contexts": [{"name": context, "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": context,
        }
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    def inject_error(self, method: str, path: str, code: int, reason: str, message: str = "injected") -> None:
        """Answer the next ``method`` on ``path`` with this error instead of serving it (once)."""
        with self._lock:
            self._injected.append((method, path, ApiError(code, reason, message)))

    # -- direct access for tests --------------------------------------------------------------------

    def get(self, plural: str, namespace: str, name: str) -> dict | None:
        with self._lock:
            found = self._objects.get((plural, namespace, name))
            return copy.deepcopy(found) if found else None

    def list(self, plural: str, namespace: str) -> list[dict]:
        with self._lock:
            return [
                copy.deepcopy(obj)
                for (kind, ns, _), obj in sorted(self._objects.items())
                if kind == plural and ns == namespace
            ]

    # -- the API ------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, content_type: str, body: bytes) -> tuple[int, dict]:
        self.requests.append((method, path, content_type))
        with self._lock:
            for injected in self._injected:
                if injected[:2] == (method, path):
                    self._injected.remove(injected)
                    raise injected[2]
        if path.rstrip("/") == "/version":
            major, minor = self.kubernetes_version.split(".")[:2]
            return 200, {
                "major": major,
                "minor": minor,
                "gitVersion": f"v{major}.{minor}.0-fake",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2025-01-01T00:00:00Z",
                "goVersion": "go1.24",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        match = _PATH.match(path)
        resource = match and RESOURCES.get((match["prefix"], match["plural"]))
        if not match or not resource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace, name = match["namespace"], match["name"]
        with self._lock:
            if name is None and method == "GET":
                return 200, self._list(resource, namespace, query.get("labelSelector", [""])[0])
            if name is None and method == "POST":
                return 201, self._create(resource, namespace, _json_object(body))
            if name is None:
                raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on a collection")
            if method == "GET":
                return 200, copy.deepcopy(self._existing(resource, namespace, name))
            if method == "PUT":
                return 200, self._update(resource, namespace, name, _json_object(body))
            if method == "PATCH":
                current = copy.deepcopy(self._existing(resource, namespace, name))
                return 200, self._update(
                    resource, namespace, name, _patched(current, content_type, body), patch=True
                )
            if method == "DELETE":
                return 200, self._delete(resource, namespace, name)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported")

    def _existing(self, resource: Resource, namespace: str, name: str) -> dict:
        found = self._objects.get((resource.plural, namespace, name))
        if found is None:
            raise ApiError(
                404,
                "NotFound",
                f'{resource.qualified} "{name}" not found',
                {"name": name, "group": resource.group, "kind": resource.plural},
            )
        return found

    def _list(self, resource: Resource, namespace: str, selector: str) -> dict:
        matches = _selector(selector)
        items = [
            copy.deepcopy(obj)
            for (plural, ns, _), obj in sorted(self._objects.items())
            if plural == resource.plural and ns == namespace and matches(obj["metadata"].get("labels") or {})
        ]
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": {"resourceVersion": str(next(self._versions))},
            "items": items,
        }

    def _create(self, resource: Resource, namespace: str, obj: dict) -> dict:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            raise _invalid(resource, "", "metadata.name", "Required value: name or generateName is required")
        self._check(resource, namespace, name, obj)
        if (resource.plural, namespace, name) in self._objects:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{resource.qualified} "{name}" already exists',
                {"name": name, "group": resource.group, "kind": resource.plural},
            )
        obj = copy.deepcopy(obj)
        metadata = obj["metadata"]
        metadata.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            resourceVersion=str(next(self._versions)),
        )
        if resource.has_generation:
            metadata["generation"] = 1
        obj.pop("status", None)
        self._default(resource, obj, None)
        self._objects[(resource.plural, namespace, name)] = obj
        if resource is DEPLOYMENTS:
            obj["status"] = {}
            self._schedule(0.02, lambda: self._reconcile(namespace, name, 1))
        return copy.deepcopy(obj)

    def _update(self, resource: Resource, namespace: str, name: str, obj: dict, patch: bool = False) -> dict:
        current = self._existing(resource, namespace, name)
        metadata = obj.get("metadata") or {}
        if metadata.get("name", name) != name:
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({name})",
            )
        obj.setdefault("metadata", metadata)["name"] = name
        self._check(resource, namespace, name, obj)
        wanted_version = metadata.get("resourceVersion")
        if not patch and wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.qualified} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                {"name": name, "group": resource.group, "kind": resource.plural},
            )
        obj = copy.deepcopy(obj)
        self._default(resource, obj, current)
        self._immutable(resource, name, obj, current)
        for key in ("uid", "creationTimestamp", "generation"):
            if key in current["metadata"]:
                obj["metadata"][key] = current["metadata"][key]
        obj["metadata"]["namespace"] = namespace
        if "status" in current:  # status is a subresource: writes to the object leave it alone
            obj["status"] = current["status"]
        else:
            obj.pop("status", None)
        spec_changed = obj.get("spec") != current.get("spec")
        if resource.has_generation and spec_changed:
            obj["metadata"]["generation"] = current["metadata"].get("generation", 0) + 1
        if obj == current:
            return copy.deepcopy(current)  # a no-op update keeps the resourceVersion, like the API server
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        self._objects[(resource.plural, namespace, name)] = obj
        if resource is DEPLOYMENTS and spec_changed:
            generation = obj["metadata"]["generation"]
            self._schedule(0.02, lambda: self._reconcile(namespace, name, generation))
        return copy.deepcopy(obj)

    def _delete(self, resource: Resource, namespace: str, name: str) -> dict:
        obj = self._existing(resource, namespace, name)
        del self._objects[(resource.plural, namespace, name)]
        uid = obj["metadata"]["uid"]
        for key, other in list(self._objects.items()):  # garbage collection of what it owned
            if any(owner.get("uid") == uid for owner in other["metadata"].get("ownerReferences") or []):
                del self._objects[key]
        return _status(
            200,
            "Success",
            "",
            "",
            {"name": name, "group": resource.group, "kind": resource.plural, "uid": uid},
        )

    # -- what the API server checks and fills in ----------------------------------------------------

    def _check(self, resource: Resource, namespace: str, name: str, obj: dict) -> None:
        import kubernetes_validate

        if obj.get("kind") != resource.kind or obj.get("apiVersion") != resource.api_version:
            raise ApiError(
                400,
                "BadRequest",
                f"the body is a {obj.get('apiVersion')} {obj.get('kind')}, expected a "
                f"{resource.api_version} {resource.kind} for {resource.qualified}",
            )
        if obj["metadata"].get("namespace", namespace) != namespace:
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        pattern = _DNS1035_LABEL if resource.kind == "Service" else _DNS1123_SUBDOMAIN
        if not pattern.match(name) or len(name) > (63 if resource.kind == "Service" else 253):
            raise _invalid(
                resource,
                name,
                "metadata.name",
                f"Invalid value: {name!r}: a lowercase RFC 1123 "
                f"{'label' if resource.kind == 'Service' else 'subdomain'} must consist of lower case "
                "alphanumeric characters or '-'",
            )
        try:
            kubernetes_validate.validate(obj, self.kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            field = _field(error.path)
            raise _invalid(resource, name, field or "<root>", f"Invalid value: {error.message}") from None
        if resource in (DEPLOYMENTS, REPLICASETS):
            spec = obj.get("spec") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if not selector:
                raise _invalid(resource, name, "spec.selector", "Required value")
            if any(labels.get(key) != value for key, value in selector.items()):
                raise _invalid(
                    resource,
                    name,
                    "spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(labels)}: `selector` does not match template `labels`",
                )
            if (spec.get("replicas") or 0) < 0:
                raise _invalid(
                    resource, name, "spec.replicas", "Invalid value: must be greater than or equal to 0"
                )

    def _default(self, resource: Resource, obj: dict, current: dict | None) -> None:
        spec = obj.setdefault("spec", {})
        if resource is DEPLOYMENTS:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            )
        if resource.kind == "Service":
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            old = (current or {}).get("spec") or {}
            if "clusterIP" not in spec:  # allocated once, kept on updates that leave it out
                spec["clusterIP"] = old.get("clusterIP") or f"10.96.0.{next(self._ips)}"
            spec.setdefault("clusterIPs", old.get("clusterIPs") or [spec["clusterIP"]])

    def _immutable(self, resource: Resource, name: str, obj: dict, current: dict) -> None:
        if resource is DEPLOYMENTS and obj["spec"].get("selector") != current["spec"].get("selector"):
            raise _invalid(resource, name, "spec.selector", "Invalid value: field is immutable")
        if resource.kind == "Service" and obj["spec"].get("clusterIP") != current["spec"].get("clusterIP"):
            raise _invalid(resource, name, "spec.clusterIPs[0]", "Invalid value: field is immutable")

    # -- the deployment controller ------------------------------------------------------------------

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._sequence), action))
            self._queue_ready.notify_all()

    def _run_controller(self) -> None:
        with self._lock:
            while not self._stopping:
                if not self._queue:
                    self._queue_ready.wait()
                    continue
                due, _, action = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._queue_ready.wait(wait)
                    continue
                heapq.heappop(self._queue)
                action()

    def _current(self, namespace: str, name: str, generation: int) -> dict | None:
        deployment = self._objects.get(("deployments", namespace, name))
        if deployment is None or deployment["metadata"]["generation"] != generation:
            return None  # deleted or changed since: a newer event takes over
        return deployment

    def _reconcile(self, namespace: str, name: str, generation: int) -> None:
        deployment = self._current(namespace, name, generation)
        if deployment is None:
            return
        new_rs, old = self._sync_replica_sets(deployment)
        wanted = deployment["spec"]["replicas"]
        old_available = sum((rs.get("status") or {}).get("readyReplicas", 0) for rs in old)
        self._set_status(
            deployment,
            replicas=wanted + old_available,
            updated=wanted,
            ready=old_available,
            progressing=(
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{new_rs["metadata"]["name"]}" is progressing.',
            ),
        )
        images = [c.get("image") for c in deployment["spec"]["template"]["spec"].get("containers", [])]
        never = any(image in self.never_ready_images for image in images) or _never_ready_env(deployment)
        if any(image in self.stuck_images for image in images):
            return
        if never:
            self._schedule(self.deadline_delay, lambda: self._time_out(namespace, name, generation))
        else:
            self._schedule(self.ready_delay, lambda: self._complete(namespace, name, generation))

    def _sync_replica_sets(self, deployment: dict) -> tuple[dict, list[dict]]:
        """Adopt or create the ReplicaSet for the current template, giving it the next revision if needed."""
        namespace, uid = deployment["metadata"]["namespace"], deployment["metadata"]["uid"]
        template = copy.deepcopy(deployment["spec"]["template"])
        template.setdefault("metadata", {}).setdefault("labels", {}).pop("pod-template-hash", None)
        template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        owned = [
            rs
            for (plural, ns, _), rs in self._objects.items()
            if plural == "replicasets"
            and ns == namespace
            and any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        ]
        revisions = [int(rs["metadata"]["annotations"][REVISION]) for rs in owned]
        latest = max(revisions, default=0)
        new_rs = next(
            (rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == template_hash), None
        )
        if new_rs is None:
            new_rs = self._new_replica_set(deployment, template, template_hash, latest + 1)
            self._objects[("replicasets", namespace, new_rs["metadata"]["name"])] = new_rs
        elif int(new_rs["metadata"]["annotations"][REVISION]) != latest:
            new_rs["metadata"]["annotations"][REVISION] = str(latest + 1)  # a rollback is a new revision
        new_rs["spec"]["replicas"] = deployment["spec"]["replicas"]
        new_rs["metadata"]["resourceVersion"] = str(next(self._versions))
        annotations = deployment["metadata"].setdefault("annotations", {})
        annotations[REVISION] = new_rs["metadata"]["annotations"][REVISION]
        deployment["metadata"]["resourceVersion"] = str(next(self._versions))
        old = [rs for rs in owned if rs is not new_rs]
        self._prune(deployment, old)
        return new_rs, [
            rs for rs in old if ("replicasets", namespace, rs["metadata"]["name"]) in self._objects
        ]

    def _new_replica_set(self, deployment: dict, template: dict, template_hash: str, revision: int) -> dict:
        metadata = deployment["metadata"]
        template["metadata"]["labels"]["pod-template-hash"] = template_hash
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{metadata['name']}-{template_hash}",
                "namespace": metadata["namespace"],
                "uid": str(uuid.uuid4()),
                "generation": 1,
                "creationTimestamp": _now(),
                "resourceVersion": str(next(self._versions)),
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": metadata["name"],
                        "uid": metadata["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {"replicas": deployment["spec"]["replicas"], "selector": selector, "template": template},
            "status": {"replicas": 0},
        }

    def _prune(self, deployment: dict, old: list[dict]) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        idle = sorted(
            (rs for rs in old if not rs["spec"].get("replicas")),
            key=lambda rs: int(rs["metadata"]["annotations"][REVISION]),
        )
        for rs in idle[: max(len(idle) - limit, 0)]:
            del self._objects[("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])]

    def _complete(self, namespace: str, name: str, generation: int) -> None:
        deployment = self._current(namespace, name, generation)
        if deployment is None:
            return
        new_rs, old = self._sync_replica_sets(deployment)
        wanted = deployment["spec"]["replicas"]
        for rs in old:
            rs["spec"]["replicas"] = 0
            rs["status"] = {"replicas": 0, "observedGeneration": rs["metadata"]["generation"]}
        new_rs["status"] = {
            "replicas": wanted,
            "readyReplicas": wanted,
            "availableReplicas": wanted,
            "fullyLabeledReplicas": wanted,
            "observedGeneration": new_rs["metadata"]["generation"],
        }
        self._set_status(
            deployment,
            replicas=wanted,
            updated=wanted,
            ready=wanted,
            progressing=(
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{new_rs["metadata"]["name"]}" has successfully progressed.',
            ),
        )

    def _time_out(self, namespace: str, name: str, generation: int) -> None:
        deployment = self._current(namespace, name, generation)
        if deployment is None:
            return
        new_rs, _ = self._sync_replica_sets(deployment)
        status = deployment["status"]
        self._set_status(
            deployment,
            replicas=status.get("replicas", 0),
            updated=status.get("updatedReplicas", 0),
            ready=status.get("readyReplicas", 0),
            progressing=(
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{new_rs["metadata"]["name"]}" has timed out progressing.',
            ),
        )

    def _set_status(
        self, deployment: dict, *, replicas: int, updated: int, ready: int, progressing: tuple
    ) -> None:
        now = _now()
        available = ready
        wanted = deployment["spec"]["replicas"]
        deployment["status"] = {
            "observedGeneration": deployment["metadata"]["generation"],
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(replicas - available, 0),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available >= wanted else "False",
                    "reason": "MinimumReplicasAvailable"
                    if available >= wanted
                    else "MinimumReplicasUnavailable",
                    "message": "Deployment has minimum availability."
                    if available >= wanted
                    else "Deployment does not have minimum availability.",
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Progressing",
                    "status": progressing[0],
                    "reason": progressing[1],
                    "message": progressing[2],
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                },
            ],
        }
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas"):
            if not deployment["status"][key]:
                del deployment["status"][key]  # the API server omits zero counts
        deployment["metadata"]["resourceVersion"] = str(next(self._versions))


def _never_ready_env(deployment: dict) -> bool:
    for container in deployment["spec"]["template"]["spec"].get("containers", []):
        for variable in container.get("env") or []:
            if variable.get("name") == "FAKE_NEVER_READY" and variable.get("value") == "true":
                return True
    return False


def _field(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _json_object(body: bytes) -> dict:
    try:
        obj = json.loads(body or b"null")
    except ValueError as error:
        raise ApiError(400, "BadRequest", f"the body is not JSON: {error}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", f"expected a JSON object, got {type(obj).__name__}")
    obj.setdefault("metadata", {})
    return obj


def _selector(text: str) -> Callable[[dict], bool]:
    """Equality-based label selectors: ``a=b,c==d,e!=f,g,!h``."""
    tests: list[Callable[[dict], bool]] = []
    for term in filter(None, (part.strip() for part in text.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) != v)
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            tests.append(lambda labels, k=key, v=value: labels.get(k) == v)
        elif term.startswith("!"):
            tests.append(lambda labels, k=term[1:]: k not in labels)
        elif " " in term or "(" in term:
            raise ApiError(400, "BadRequest", f"set-based selector {term!r} is not supported by the fake")
        else:
            tests.append(lambda labels, k=term: k in labels)
    return lambda labels: all(test(labels) for test in tests)


def _patched(current: dict, content_type: str, body: bytes) -> dict:
    try:
        patch = json.loads(body or b"null")
    except ValueError as error:
        raise ApiError(400, "BadRequest", f"the patch is not JSON: {error}") from None
    if content_type == "application/json-patch+json":
        if not isinstance(patch, list):
            raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
        for operation in patch:
            _json_patch(current, operation)
        return current
    if content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        if not isinstance(patch, dict):
            raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
        return _merge(current, patch)
    raise ApiError(415, "UnsupportedMediaType", f"the fake does not support patches of type {content_type!r}")


def _json_patch(document: dict, operation: dict) -> None:
    op, path = operation.get("op"), operation.get("path", "")
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    if not parts:
        raise ApiError(422, "Invalid", f"JSON patch path {path!r} must point inside the object")
    parent = document
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError):
            raise ApiError(422, "Invalid", f"JSON patch path {path!r} does not exist") from None
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op == "add":
            parent.insert(index, operation["value"])
        elif op == "replace":
            parent[index] = operation["value"]
        elif op == "remove":
            del parent[index]
        else:
            raise ApiError(422, "Invalid", f"JSON patch operation {op!r} is not supported by the fake")
        return
    if op in ("replace", "remove", "test") and last not in parent:
        raise ApiError(422, "Invalid", f"JSON patch {op} of {path!r}: the path does not exist")
    if op in ("add", "replace"):
        parent[last] = operation["value"]
    elif op == "remove":
        del parent[last]
    elif op == "test":
        if parent[last] != operation.get("value"):
            raise ApiError(422, "Invalid", f"JSON patch test of {path!r} failed")
    else:
        raise ApiError(422, "Invalid", f"JSON patch operation {op!r} is not supported by the fake")


def _merge(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


class _Handler(BaseHTTPRequestHandler):
    fake: FakeKubernetes
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # quiet: pytest shows failures, not traffic
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            if self.fake.token and self.headers.get("Authorization") != f"Bearer {self.fake.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            code, payload = self.fake.handle(self.command, url.path, parse_qs(url.query), content_type, body)
        except ApiError as error:
            code, payload = error.code, error.status()
        except Exception as error:  # a bug in the fake: say so, as the API server would say 500
            code, payload = 500, _status(500, "Failure", "InternalError", f"fake apiserver: {error!r}")
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve
