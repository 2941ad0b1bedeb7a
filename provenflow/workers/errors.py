"""Errors of the worker pools, under provenflow's one hierarchy.

    ProvenflowError
    └── WorkerError                    provenflow.workers
        ├── VSphereConnectError        bad credentials, unreachable vCenter, an unverifiable certificate
        ├── VSphereNotFound            a datacenter, cluster, pool, datastore, folder or template that is not there
        ├── VSphereTaskFailed          a vSphere task (clone, reconfigure, power, destroy) that ended in error
        ├── ProvisionFailed            a worker VM that could not be made ready (what was cleaned up is said)
        └── PoolError                  a Prefect work pool that cannot be created as asked

No message carries a password: connection errors are built from the fault's type and the host, and every
message passes through ``provenflow.redact.redact`` (with the password) before it is raised.
"""

from __future__ import annotations

from provenflow.errors import ProvenflowError


class WorkerError(ProvenflowError):
    """Root of the worker-pool errors."""


class VSphereConnectError(WorkerError):
    pass


class VSphereNotFound(WorkerError):
    pass


class VSphereTaskFailed(WorkerError):
    def __init__(self, message: str, fault: str | None = None) -> None:
        super().__init__(message)
        self.fault = fault


class ProvisionFailed(WorkerError):
    def __init__(self, message: str, vm: str, cleaned_up: bool) -> None:
        super().__init__(message)
        self.vm = vm
        self.cleaned_up = cleaned_up


class PoolError(WorkerError):
    pass
