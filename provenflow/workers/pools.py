"""provenflow's three Prefect work pools, and creating them idempotently.

    specs = default_pools(image="registry.local:5000/provenflow/flows@sha256:…")
    ensure_pools(client, specs)      # a Prefect client (sync); created / updated / unchanged per pool

- ``provenflow-process``: a process pool; a worker on the machine that holds the project runs the flows.
- ``provenflow-vsphere``: also a *process* pool; its workers are the VMs ``provenflow workers scale`` clones,
  each running ``provenflow pools worker provenflow-vsphere`` (infra/cloud-init): Prefect's process worker,
  its flow runs forked from a warm runner on the VM.
- ``provenflow-kubernetes``: a Kubernetes pool whose base job template is
  ``deployments/kubernetes-base-job-template.json``; a worker in the cluster (infra/kubernetes) runs each flow
  run as a Job.

The templates and names are plain data; only ``ensure_pools`` talks to Prefect, through the client it is
given (Prefect's request and response types are imported there, at call time).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provenflow.workers.errors import PoolError

# deployments/kubernetes-base-job-template.json, linked into the package so an installed provenflow has it.
KUBERNETES_TEMPLATE = Path(__file__).resolve().parent / "kubernetes-base-job-template.json"
PROCESS_POOL, VSPHERE_POOL, KUBERNETES_POOL = (
    "provenflow-process",
    "provenflow-vsphere",
    "provenflow-kubernetes",
)


@dataclass(frozen=True)
class PoolSpec:
    name: str
    type: str
    description: str
    base_job_template: dict[str, Any]


def load_kubernetes_template(path: Path = KUBERNETES_TEMPLATE, **defaults: Any) -> dict[str, Any]:
    """The Kubernetes base job template, with variable DEFAULTS (image=…, namespace=…) set where given."""
    try:
        template = json.loads(path.read_text())
    except OSError as error:
        raise PoolError(f"cannot read the base job template {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise PoolError(f"the base job template {path} is not valid JSON: {error}") from None
    if not isinstance(template, dict) or set(template) != {"job_configuration", "variables"}:
        raise PoolError(
            f"{path} is not a base job template: expected the keys job_configuration and variables"
        )
    properties = template["variables"].get("properties", {})
    for name, value in defaults.items():
        if value is None:
            continue
        if name not in properties:
            raise PoolError(f"{path} has no variable {name!r}; known: {', '.join(sorted(properties))}")
        properties[name]["default"] = value
    return template


def process_template() -> dict[str, Any]:
    from prefect.workers.process import ProcessWorker

    return copy.deepcopy(ProcessWorker.get_default_base_job_template())


def default_pools(
    *,
    process: str | None = PROCESS_POOL,
    vsphere: str | None = VSPHERE_POOL,
    kubernetes: str | None = KUBERNETES_POOL,
    kubernetes_template: Path = KUBERNETES_TEMPLATE,
    image: str | None = None,
    namespace: str | None = None,
) -> list[PoolSpec]:
    """The pools to create; a name given as None leaves that pool out."""
    specs = []
    if process:
        specs.append(PoolSpec(process, "process", "provenflow flows on this machine (process worker).",
                              process_template()))  # fmt: skip
    if vsphere:
        specs.append(PoolSpec(vsphere, "process", "provenflow flows on vSphere worker VMs (process workers; "
                              "`provenflow workers scale`).", process_template()))  # fmt: skip
    if kubernetes:
        template = load_kubernetes_template(kubernetes_template, image=image, namespace=namespace)
        specs.append(PoolSpec(kubernetes, "kubernetes", "provenflow flows as Kubernetes Jobs.", template))
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise PoolError(f"two pools share a name ({', '.join(names)}); give each pool its own name")
    return specs


def ensure_pools(client: Any, specs: list[PoolSpec]) -> list[dict[str, str]]:
    """Create each pool, or bring an existing one's template and description up to date.

    Returns one ``{"name", "type", "action"}`` per pool, action one of created / updated / unchanged.
    Raises PoolError for a pool that exists with another type (Prefect cannot change a pool's type).
    """
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    results = []
    for spec in specs:
        try:
            existing = client.read_work_pool(spec.name)
        except ObjectNotFound:
            existing = None
        if existing is None:
            try:
                pool = WorkPoolCreate(
                    name=spec.name,
                    type=spec.type,
                    description=spec.description,
                    base_job_template=spec.base_job_template,
                )
                client.create_work_pool(pool)
                results.append({"name": spec.name, "type": spec.type, "action": "created"})
                continue
            except ObjectAlreadyExists:  # created meanwhile by someone else: compare with theirs
                existing = client.read_work_pool(spec.name)
        if existing.type != spec.type:
            raise PoolError(
                f"work pool {spec.name!r} exists with type {existing.type!r}, not {spec.type!r}; Prefect cannot "
                f"change a pool's type: delete it (prefect work-pool delete {spec.name!r}) or choose another name"
            )
        if existing.base_job_template == spec.base_job_template and existing.description == spec.description:
            results.append({"name": spec.name, "type": spec.type, "action": "unchanged"})
            continue
        client.update_work_pool(
            spec.name,
            WorkPoolUpdate(description=spec.description, base_job_template=spec.base_job_template),
        )
        results.append({"name": spec.name, "type": spec.type, "action": "updated"})
    return results
