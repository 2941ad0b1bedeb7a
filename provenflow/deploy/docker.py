"""Deploying a released image on the local Docker engine.

A new container starts beside the old one; only when it answers /ready does it take the name and
the old one go. A container that never becomes ready is removed and the old one keeps serving.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provenflow.deploy.errors import DeployError, RolloutFailed
from provenflow.deploy.release import SERVING_PORT, SERVING_USER
from provenflow.platform.probe import answers_ok

CONTAINER_STORE = "/store"
# A production container reaches its shadow challenger by name on this user-defined network.
SHADOW_NETWORK = "provenflow-shadow"


@dataclass(frozen=True)
class DockerDeployment:
    name: str
    container_id: str
    endpoint: str
    image: str
    replaced: str | None  # id of the container it replaced

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def wait_ready(url: str, timeout: float, container: Any) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            raise RolloutFailed(
                f"the container exited before it was ready:\n{_tail(container)}", reason="ContainerExited"
            )
        if answers_ok(f"{url}/ready", timeout=2):
            return
        time.sleep(0.5)
    raise RolloutFailed(
        f"{url}/ready did not answer within {timeout:.0f} s:\n{_tail(container)}", reason="Timeout"
    )


def _tail(container: Any) -> str:
    try:
        return container.logs(tail=20).decode(errors="replace")
    except Exception:  # logs of a removed container: nothing to add
        return ""


def predictions_mount(store_root: Path) -> dict:
    """The store's predictions folder, writable by the server's user and nothing else of the store."""
    folder = store_root / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        # The whole tree: a local server running as root may have made a model's folder already.
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, SERVING_USER, SERVING_USER)
    return {str(folder): {"bind": f"{CONTAINER_STORE}/predictions", "mode": "rw"}}


def _network(client: Any, name: str) -> None:
    from docker.errors import NotFound

    try:
        client.networks.get(name)
    except NotFound:
        client.networks.create(name, driver="bridge", labels={"io.provenflow.purpose": "shadow"})


def deploy(
    client: Any,
    image: str,
    name: str,
    port: int | None,
    env: dict[str, str],
    volumes: dict,
    labels: dict[str, str],
    timeout: float = 90.0,
    network: str | None = None,
) -> DockerDeployment:
    """Start ``image`` as container ``name`` (replacing the one of that name once it is ready). With
    ``network``, the container joins that user-defined network (made if missing) with ``name`` as its
    alias from the start, so other containers there reach it by name during and after the swap."""
    from docker.errors import APIError, NotFound

    try:
        old = client.containers.get(name)
    except NotFound:
        old = None
    candidate_name = f"{name}-next" if old else name
    try:
        stale = client.containers.get(candidate_name) if old else None
        if stale:
            stale.remove(force=True)
    except NotFound:
        pass
    if old is not None and port:
        old.stop(timeout=10)  # the fixed host port must be free for the new container
    networking = {}
    if network:
        _network(client, network)
        networking = {"network": network,
                      "networking_config": {network: client.api.create_endpoint_config(aliases=[name])}}  # fmt: skip
    try:
        container = client.containers.run(
            image, name=candidate_name, detach=True, environment=env, volumes=volumes, labels=labels,
            ports={f"{SERVING_PORT}/tcp": ("127.0.0.1", port) if port else ("127.0.0.1", None)},
            restart_policy={"Name": "unless-stopped"}, user=str(SERVING_USER), **networking,
        )  # fmt: skip
    except APIError as exc:
        if old is not None and port:
            old.start()
        raise DeployError(f"docker could not start {image}: {exc.explanation or exc}") from None
    container.reload()
    host_port = container.attrs["NetworkSettings"]["Ports"][f"{SERVING_PORT}/tcp"][0]["HostPort"]
    endpoint = f"http://127.0.0.1:{host_port}"
    try:
        wait_ready(endpoint, timeout, container)
    except RolloutFailed as exc:
        container.remove(force=True)
        if old is not None and port:
            old.start()
        kept = f"; {name} keeps serving the previous version" if old is not None else ""
        raise RolloutFailed(f"{image} did not become ready{kept}: {exc}", reason=exc.reason) from None
    replaced = None
    if old is not None:
        replaced = old.id
        old.stop(timeout=30)  # a clean stop: the server writes its last prediction-log segment
        old.remove(force=True)
        container.rename(name)
    return DockerDeployment(name, container.id, endpoint, image, replaced)
