"""provision-workers: scale a pool of Prefect worker VMs on vSphere to a count."""

from __future__ import annotations

from provenflow.flows._flow import flow
from provenflow.tasks.workers import load_worker_pool, scale_worker_vms


@flow(name="provision-workers", flow_run_name="provision-workers-{pool_block}")
def provision_workers(pool_block: str, count: int | None = None) -> dict:
    """Make POOL_BLOCK (a VSphereWorkerPool block) run COUNT worker VMs (default: the block's `workers`).

    New VMs are cloned from the block's template with cloud-init that starts a Prefect worker; extra VMs
    are retired newest first. Running it at the current count changes nothing.
    """
    config = load_worker_pool(pool_block)
    return scale_worker_vms(config, config.workers if count is None else count)
