"""Rendering a flow run's Kubernetes Job with prefect-kubernetes' own code, from a base job template."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra" / "kubernetes"


class NoPrefectApi:
    """Stands in for the Prefect client: a template without block or variable references never calls it."""


def render_job(template: dict, values: dict) -> tuple[dict, object]:
    """(the Job manifest a Kubernetes worker would create for a new flow run, that flow run)."""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    configuration = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(template, values, client=NoPrefectApi())
    )
    flow_run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="calm-otter")
    configuration.prepare_for_flow_run(flow_run)
    return configuration.job_manifest, flow_run


def infra_manifests() -> list[tuple[str, dict]]:
    """(file name, object) for every object in infra/kubernetes/*.yaml."""
    found = []
    for path in sorted(INFRA.glob("*.yaml")):
        found.extend((path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found
