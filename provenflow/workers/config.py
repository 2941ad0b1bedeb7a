"""The settings of one vSphere worker pool: where the VMs go, how big they are, and what they join.

``VSphereWorkerPoolConfig`` is a frozen, self-validating value (the ``VSphereWorkerPool`` block builds one);
a bad value fails at construction, naming the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# VM names become host names (cloud-init local-hostname): keep them DNS labels.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PREFECT_NAME = re.compile(r"^[^/%&><]+$")
# infra/cloud-init/worker-user-data.yaml, linked into the package so an installed provenflow has it.
DEFAULT_CLOUD_INIT_TEMPLATE = Path(__file__).resolve().parent / "worker-user-data.yaml"


class VSphereWorkerPoolConfig(BaseModel):
    """Connection, placement, size and Prefect settings of a pool of worker VMs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535)
    protocol: Literal["https", "http"] = "https"
    username: str = Field(min_length=1)
    password: SecretStr
    verify_tls: bool = True
    datacenter: str | None = None
    cluster: str | None = None
    resource_pool: str | None = None
    datastore: str | None = None
    folder: str | None = None
    template: str = Field(min_length=1)
    cpus: int = Field(default=2, ge=1, le=768)
    memory_mb: int = Field(default=4096, ge=256, le=24 * 1024 * 1024)
    workers: int = Field(default=1, ge=0, le=500)
    work_pool: str = Field(default="provenflow-vsphere", min_length=1)
    prefect_api_url: str
    vm_name_prefix: str | None = None
    project_source: str | None = None
    wheelhouse_url: str | None = None
    ssh_authorized_keys: tuple[str, ...] = ()
    cloud_init_template: str | None = None
    ip_wait_seconds: float = Field(default=120.0, ge=0)
    task_timeout_seconds: float = Field(default=900.0, gt=0)
    connect_timeout_seconds: float = Field(default=15.0, gt=0)

    @field_validator("memory_mb")
    @classmethod
    def _memory_multiple_of_4(cls, value: int) -> int:
        if value % 4:
            raise ValueError(
                f"memory_mb: {value} is not a multiple of 4 MB, as vSphere requires; try {value - value % 4}"
            )
        return value

    @field_validator("work_pool")
    @classmethod
    def _work_pool_name(cls, value: str) -> str:
        if not _PREFECT_NAME.match(value):
            raise ValueError(f"work_pool: {value!r} may not contain / % & > <")
        return value

    @field_validator("vm_name_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is not None and (not _NAME.match(value) or len(value) > 50):
            raise ValueError(
                f"vm_name_prefix: {value!r} must be lowercase letters, digits and dashes (at most 50), "
                "since VM names become host names"
            )
        return value

    @field_validator("prefect_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s]+/api/?$", value):
            raise ValueError(
                f"prefect_api_url: {value!r} is not a Prefect API URL; expected e.g. http://prefect.example:4200/api"
            )
        return value.rstrip("/")

    @field_validator("project_source", "wheelhouse_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|file)://\S+$", value):
            raise ValueError(f"{value!r} is not an http(s):// or file:// URL")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or (443 if self.protocol == "https" else 80)

    @property
    def endpoint(self) -> str:
        """The vCenter's SDK address, for messages (no credentials)."""
        return f"{self.protocol}://{self.host}:{self.effective_port}/sdk"

    @property
    def name_prefix(self) -> str:
        """Worker VMs are named PREFIX-001, PREFIX-002, …"""
        if self.vm_name_prefix:
            return self.vm_name_prefix
        slug = re.sub(r"[^a-z0-9]+", "-", self.work_pool.lower()).strip("-")[:40] or "provenflow"
        return f"{slug}-worker"

    @property
    def template_path(self) -> Path:
        return Path(self.cloud_init_template) if self.cloud_init_template else DEFAULT_CLOUD_INIT_TEMPLATE
