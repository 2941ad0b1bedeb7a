from __future__ import annotations

import shutil
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from provenflow.deploy import docker as docker_target
from provenflow.deploy import local as local_target
from provenflow.deploy.release import docker_client
from provenflow.workspace import Workspace


@task(cache_policy=NO_CACHE)
def run_on_docker(
    workspace: Workspace,
    reference: str,
    name: str,
    port: int | None,
    env: dict,
    labels: dict,
    timeout: float,
    network: str | None = None,
) -> docker_target.DockerDeployment:
    env = {"PROVENFLOW_PREDICTION_LOG_URL": docker_target.CONTAINER_STORE, **env}
    volumes = docker_target.predictions_mount(Path(workspace.store.root)) if workspace.store.local else {}
    return docker_target.deploy(
        docker_client(), reference, name, port, env, volumes, labels, timeout, network
    )


@task(cache_policy=NO_CACHE)
def run_on_kubernetes(
    block: str | None, reference: str, name: str, labels: dict, env: dict, timeout: float
) -> dict:
    """Render, validate against the official schemas, apply, wait for the rollout (or roll back)."""
    from provenflow.deploy import kubernetes as k8s

    if block:
        from provenflow.blocks.kubernetes import KubernetesTarget

        target = KubernetesTarget.load(block)
        config, client = target.config(), target.get_api_client()
    else:
        config = k8s.KubernetesTargetConfig()
        client = k8s.api_client_for(config)
    manifests = k8s.render_manifests(config, name, reference, labels, env)
    k8s.validate_manifests(manifests)
    result = k8s.deploy(client, config, manifests, timeout)
    return result.to_dict()


@task(cache_policy=NO_CACHE)
def run_locally(
    workspace: Workspace,
    model: str,
    model_hash: str,
    name: str,
    port: int | None,
    timeout: float,
    env: dict[str, str] | None = None,
) -> local_target.LocalDeployment:
    """Export the bundle of MODEL (an exact NAME@VERSION) under .provenflow/deployments/NAME/ and
    serve it from a background process."""
    from provenflow.serving.bundle import export_bundle

    folder = local_target.servers_folder() / name
    bundle = folder / f"{model.rsplit('@', 1)[1]}-{model_hash[:12]}"
    if not (bundle / "metadata.json").exists():
        shutil.rmtree(bundle, ignore_errors=True)
        export_bundle(workspace, model, bundle)
    return local_target.deploy(bundle, folder, name, workspace.store.url, port, timeout, model_hash, env)
