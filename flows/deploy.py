"""deploy: run a released model image on the local Docker engine or on Kubernetes, and record it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select

import provenflow
from provenflow.blocks.credentials import secret_values
from provenflow.deploy import docker as docker_target
from provenflow.deploy.errors import DeployError
from provenflow.deploy.release import SERVING_PORT
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_model, safe_name
from provenflow.serving.mirror import URL_ENV as SHADOW_URL_ENV
from provenflow.tasks.deploy import run_locally, run_on_docker, run_on_kubernetes
from provenflow.tasks.workspace import open_workspace


@flow(name="deploy", flow_run_name="deploy-{model}-to-{target}")
def deploy(
    model: str,
    target: Literal["docker", "kubernetes", "local"] = "docker",
    port: int | None = None,
    kubernetes_block: str | None = None,
    env: dict[str, str] | None = None,
    env_secrets: dict[str, str] | None = None,
    timeout: float = 120.0,
    shadow_of: str | None = None,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Deploy the newest release of MODEL (NAME@VERSION or NAME@ALIAS; release it first).

    One deployment per model name: deploying another version replaces it once the new one is
    ready (Docker; or LOCAL, a background server process on this machine that needs no image), or
    rolls it out and back on failure (Kubernetes, settings in KUBERNETES_BLOCK). ENV is the server's
    environment; ENV_SECRETS maps variables to Prefect Secret blocks holding their values (a token:
    flow parameters never hold one).

    SHADOW_OF (e.g. NAME@production): MODEL is a shadow challenger. It is deployed beside the model
    SHADOW_OF names (as ``provenflow-NAME-shadow``), then SHADOW_OF is deployed again (on PORT)
    with the challenger's address, and mirrors every answered request to it without waiting for it;
    both log their predictions under the same request ids (``provenflow shadow-report``).
    """
    workspace = open_workspace(ledger_block, store_block)
    env = {**(env or {}), **secret_values(env_secrets or {})}
    parameters = {"model": model, "target": target, "port": port, "kubernetes_block": kubernetes_block,
                  "shadow_of": shadow_of}  # fmt: skip
    with provenflow.start(f"deploy-{model}", kind="deployment", flow="deploy", parameters=parameters,
                          workspace=workspace) as run:  # fmt: skip
        with workspace.ledger.reader() as session:
            version, release = _resolve(session, model, target)
            production = _resolve(session, shadow_of, target) if shadow_of else None
        if production is not None and production[0].id == version.id:
            raise DeployError(
                f"{model} and --shadow-of {shadow_of} are the same version ({version.ref}); a shadow "
                "challenger is another version, e.g. NAME@challenger --shadow-of NAME@production"
            )
        run.input(version)
        name = safe_name(f"provenflow-{version.name}").lower()
        placed = []
        if production is None:
            placed.append((version, release, name, *_place(workspace, target, version, release, name, port,
                                                           kubernetes_block, env, timeout)))  # fmt: skip
        else:
            run.input(production[0])
            challenger_name = safe_name(f"provenflow-{version.name}-shadow").lower()
            network = docker_target.SHADOW_NETWORK if target == "docker" else None
            endpoint, details = _place(workspace, target, version, release, challenger_name, None,
                                       kubernetes_block, env, timeout, network)  # fmt: skip
            # How production reaches it: a container by its name on the shadow network, a pod by the Service.
            reach = f"http://{challenger_name}:{SERVING_PORT}" if target == "docker" else endpoint
            details = {**details, "shadow_of": production[0].ref}
            placed.append((version, release, challenger_name, endpoint, details))
            version, release = production
            name = safe_name(f"provenflow-{version.name}").lower()
            endpoint, details = _place(workspace, target, version, release, name, port, kubernetes_block,
                                       {**env, SHADOW_URL_ENV: reach}, timeout, network)  # fmt: skip
            placed.append((version, release, name, endpoint, {**details, "shadow": placed[0][0].ref,
                                                              "shadow_url": reach}))  # fmt: skip

        def write(session) -> None:
            for placed_version, placed_release, placed_name, endpoint, details in placed:
                # One deployment per name and target: what it replaced is no longer serving.
                previous = select(m.Deployment).where(
                    m.Deployment.name == placed_name,
                    m.Deployment.target == target,
                    m.Deployment.state == "ready",
                )
                for row in session.scalars(previous):
                    row.state = "replaced"
                release_id = placed_release.id if placed_release and target != "local" else None
                session.add(m.Deployment(
                    model_version_id=placed_version.id, release_id=release_id, target=target, name=placed_name,
                    endpoint=endpoint, state="ready", details=details, run_id=run.id, created_at=datetime.now(UTC),
                ))  # fmt: skip

        run.record(write)
    version, release, name, endpoint, details = placed[-1]
    result = {"run_id": run.id, "model": version.ref, "image": release.reference if release and target != "local" else None,
              "target": target, "name": name, "endpoint": endpoint, "details": details}  # fmt: skip
    if shadow_of:
        challenger = placed[0]
        result["shadow"] = {"model": challenger[0].ref, "name": challenger[2], "endpoint": challenger[3],
                            "details": challenger[4]}  # fmt: skip
    return result


def _resolve(session, ref: str, target: str) -> tuple[m.ModelVersion, m.Release | None]:
    version = resolve_model(session, ref)
    release = session.scalars(
        select(m.Release).where(m.Release.model_version_id == version.id).order_by(m.Release.id.desc())
    ).first()
    if release is None and target != "local":
        raise DeployError(
            f"{version.ref} has no release yet; build one with `provenflow release {version.ref}`"
        )
    return version, release


def _place(
    workspace,
    target: str,
    version: m.ModelVersion,
    release: m.Release | None,
    name: str,
    port: int | None,
    kubernetes_block: str | None,
    env: dict[str, str],
    timeout: float,
    network: str | None = None,
) -> tuple[str, dict]:
    """Start (or replace) the server NAME for VERSION; its endpoint and details."""
    labels = {
        k: v
        for k, v in ((release.labels if release else None) or {}).items()
        if k.startswith("io.provenflow.")
    }
    if target == "local":
        placed = run_locally(workspace, version.ref, version.hash, name, port, timeout, env)
        return placed.endpoint, placed.as_dict()
    if target == "docker":
        placed = run_on_docker(workspace, release.reference, name, port, env, labels, timeout, network)
        return placed.endpoint, placed.as_dict()
    details = run_on_kubernetes(kubernetes_block, release.reference, name, labels, env, timeout)
    return details["endpoint"], details
