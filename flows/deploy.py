"""deploy: run a released model image on the local Docker engine or on Kubernetes, and record it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import select

import provenflow
from provenflow.blocks.credentials import secret_values
from provenflow.deploy.errors import DeployError
from provenflow.flows._flow import flow
from provenflow.ledger import models as m
from provenflow.refs import resolve_model, safe_name
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
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Deploy the newest release of MODEL (NAME@VERSION or NAME@ALIAS; release it first).

    One deployment per model name: deploying another version replaces it once the new one is
    ready (Docker; or LOCAL, a background server process on this machine that needs no image), or
    rolls it out and back on failure (Kubernetes, settings in KUBERNETES_BLOCK). ENV is the server's
    environment; ENV_SECRETS maps variables to Prefect Secret blocks holding their values (a token:
    flow parameters never hold one).
    """
    workspace = open_workspace(ledger_block, store_block)
    env = {**(env or {}), **secret_values(env_secrets or {})}
    parameters = {"model": model, "target": target, "port": port, "kubernetes_block": kubernetes_block}
    with provenflow.start(f"deploy-{model}", kind="deployment", flow="deploy", parameters=parameters,
                          workspace=workspace) as run:  # fmt: skip
        with workspace.ledger.reader() as session:
            version = resolve_model(session, model)
            release = session.scalars(
                select(m.Release)
                .where(m.Release.model_version_id == version.id)
                .order_by(m.Release.id.desc())
            ).first()
            if release is None and target != "local":
                raise DeployError(
                    f"{version.ref} has no release yet; build one with `provenflow release {version.ref}`"
                )
        run.input(version)
        name = safe_name(f"provenflow-{version.name}").lower()
        labels = {
            k: v
            for k, v in ((release.labels if release else None) or {}).items()
            if k.startswith("io.provenflow.")
        }
        if target == "local":
            placed = run_locally(workspace, version.ref, version.hash, name, port, timeout)
            endpoint, details = placed.endpoint, placed.as_dict()
        elif target == "docker":
            placed = run_on_docker(workspace, release.reference, name, port, env, labels, timeout)
            endpoint, details = placed.endpoint, placed.as_dict()
        else:
            details = run_on_kubernetes(kubernetes_block, release.reference, name, labels, env, timeout)
            endpoint = details["endpoint"]
        release_id = release.id if release and target != "local" else None

        def write(session) -> None:
            # One deployment per name and target: what it replaced is no longer serving.
            previous = select(m.Deployment).where(
                m.Deployment.name == name, m.Deployment.target == target, m.Deployment.state == "ready"
            )
            for row in session.scalars(previous):
                row.state = "replaced"
            session.add(m.Deployment(
                model_version_id=version.id, release_id=release_id, target=target, name=name, endpoint=endpoint,
                state="ready", details=details, run_id=run.id, created_at=datetime.now(UTC),
            ))  # fmt: skip

        run.record(write)
    return {"run_id": run.id, "model": version.ref, "image": release.reference if release_id else None, "target": target, "name": name,
            "endpoint": endpoint, "details": details}  # fmt: skip
