from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from prefect.blocks.core import Block
from pydantic import Field, SecretStr, model_validator

from provenflow.blocks._config import core_config
from provenflow.workers.config import VSphereWorkerPoolConfig

if TYPE_CHECKING:
    from provenflow.workers.vsphere import VSphereSession


class VSphereWorkerPool(Block):
    """A pool of Prefect worker VMs on vSphere: where they are cloned, how big they are, what they join.

    `provenflow workers scale BLOCK_NAME --count N` (or the `provision-workers` flow) clones the template
    into worker VMs whose cloud-init (through guestinfo) installs provenflow and starts
    `prefect worker start --pool WORK_POOL`.

    Example:
        ```python
        from provenflow.blocks.vsphere import VSphereWorkerPool

        pool = VSphereWorkerPool.load("BLOCK_NAME")
        with pool.connect() as session:
            ...
        ```
    """

    _block_type_name: ClassVar[str] = "provenflow vSphere Worker Pool"
    _block_type_slug: ClassVar[str] = "provenflow-vsphere-worker-pool"
    _description: ClassVar[str] = (
        "Prefect worker VMs cloned from a vSphere template: vCenter connection, placement, size and work pool."
    )

    host: str = Field(description="Host name or address of the vCenter (or ESXi) server.")
    port: int | None = Field(
        default=None, description="Port of the vCenter SDK; empty for 443 (https) or 80 (http)."
    )
    protocol: Literal["https", "http"] = Field(
        default="https", description="https for vCenter; http only for a simulator such as vcsim."
    )
    username: str = Field(description="vCenter user, e.g. provenflow@vsphere.local.")
    password: SecretStr = Field(description="Password of the vCenter user.")
    verify_tls: bool = Field(
        default=True, description="Verify vCenter's TLS certificate; turn off only on a trusted network."
    )
    datacenter: str | None = Field(
        default=None, description="Datacenter of the template and workers; empty if there is only one."
    )
    cluster: str | None = Field(
        default=None, description="Cluster (or standalone host) the workers run on; empty for the template's."
    )
    resource_pool: str | None = Field(
        default=None, description="Resource pool path below the cluster's root pool, e.g. ml/workers."
    )
    datastore: str | None = Field(
        default=None, description="Datastore of the workers' disks; empty for the template's."
    )
    folder: str | None = Field(
        default=None, description="VM folder path below the datacenter's VM folder; empty for the top."
    )
    template: str = Field(description="Name of the template VM (with cloud-init and VMware Tools) to clone.")
    cpus: int = Field(default=2, description="Virtual CPUs of each worker VM.")
    memory_mb: int = Field(default=4096, description="Memory of each worker VM in MB (a multiple of 4).")
    workers: int = Field(default=1, description="Desired number of worker VMs, used when no count is given.")
    work_pool: str = Field(
        default="provenflow-vsphere", description="Prefect work pool (type process) the workers join."
    )
    prefect_api_url: str = Field(
        description="Prefect API URL the workers use, reachable from the VMs, e.g. http://prefect:4200/api."
    )
    vm_name_prefix: str | None = Field(
        default=None, description="Worker VMs are named PREFIX-001, …; empty for WORK_POOL-worker."
    )
    project_source: str | None = Field(
        default=None,
        description="URL of the provenflow source archive (.tar.gz) or wheel the workers install.",
    )
    wheelhouse_url: str | None = Field(
        default=None, description="URL of a folder of wheels to install from without a package index."
    )
    ssh_authorized_keys: list[str] = Field(
        default_factory=list, description="SSH public keys allowed to log in to the workers' default user."
    )
    ip_wait_seconds: float = Field(
        default=120.0, description="Seconds to wait for a new worker to report its IP address."
    )
    task_timeout_seconds: float = Field(
        default=900.0, description="Seconds any one vSphere task (clone, power, destroy) may take."
    )

    @model_validator(mode="after")
    def _valid(self) -> VSphereWorkerPool:
        self.config()  # every check lives on the config; a ConfigError is a ValueError for pydantic
        return self

    def config(self) -> VSphereWorkerPoolConfig:
        """The pool's settings as the core's frozen, validated config."""
        values = {
            name: getattr(self, name)
            for name in type(self).model_fields
            if name in VSphereWorkerPoolConfig.model_fields
        }
        values["ssh_authorized_keys"] = tuple(self.ssh_authorized_keys)
        return core_config("VSphereWorkerPool", VSphereWorkerPoolConfig, values)

    def connect(self) -> VSphereSession:
        """A logged-in vCenter session (a context manager that logs out)."""
        from provenflow.workers.vsphere import open_session

        return open_session(self.config())
