"""Prefect workers: a pool of worker VMs on vSphere, and provenflow's Prefect work pools.

Plain Python without Prefect at import time: the ``VSphereWorkerPool`` block (blocks/vsphere.py), the
``provision-workers`` flow and ``provenflow workers`` / ``provenflow pools`` wire these to Prefect.

    from provenflow.workers import VSphereWorkerPoolConfig, connect, list_workers, scale

    with connect(config) as session:
        result = scale(session, 3)
"""

from __future__ import annotations

from provenflow.workers.config import VSphereWorkerPoolConfig
from provenflow.workers.errors import (
    PoolError,
    ProvisionFailed,
    VSphereConnectError,
    VSphereNotFound,
    VSphereTaskFailed,
    WorkerError,
)

__all__ = [
    "PoolError",
    "ProvisionFailed",
    "ScaleResult",
    "VSphereConnectError",
    "VSphereNotFound",
    "VSphereTaskFailed",
    "VSphereWorkerPoolConfig",
    "Worker",
    "WorkerError",
    "connect",
    "list_workers",
    "scale",
]


def __getattr__(name: str):
    # pyvmomi loads ~1,000 type definitions: import it only when vSphere is used.
    if name in ("connect",):
        from provenflow.workers import vsphere

        return getattr(vsphere, name)
    if name in ("list_workers", "scale", "Worker", "ScaleResult"):
        from provenflow.workers import pool

        return getattr(pool, name)
    raise AttributeError(name)
