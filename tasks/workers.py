"""Tasks of the provision-workers flow: thin wrappers over provenflow.workers."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from provenflow.workers.config import VSphereWorkerPoolConfig


@task(cache_policy=NO_CACHE)
def load_worker_pool(block_name: str) -> VSphereWorkerPoolConfig:
    """The VSphereWorkerPool block's settings."""
    from provenflow.blocks.vsphere import VSphereWorkerPool

    return VSphereWorkerPool.load(block_name).config()


@task(cache_policy=NO_CACHE)
def scale_worker_vms(config: VSphereWorkerPoolConfig, count: int) -> dict:
    """Clone, retire or clean up worker VMs until COUNT ready ones run; what was done."""
    from provenflow.workers import connect, scale

    logger = get_run_logger()
    with connect(config) as session:
        return scale(session, count, on_event=logger.info).as_dict()


@task(cache_policy=NO_CACHE)
def list_worker_vms(config: VSphereWorkerPoolConfig) -> list[dict]:
    from provenflow.workers import connect, list_workers

    with connect(config) as session:
        return [worker.as_dict() for worker in list_workers(session)]
