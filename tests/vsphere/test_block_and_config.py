"""The VSphereWorkerPool block and its config: Prefect's block standards, validation, secrets, import hygiene."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from pydantic import SecretStr

from provenflow.blocks.vsphere import VSphereWorkerPool
from provenflow.errors import ConfigError

REQUIRED = dict(host="vcenter.example", username="svc-provenflow@vsphere.local", password=SecretStr("hunter2-secret"),
                template="ubuntu-24.04-cloudinit", prefect_api_url="http://prefect.example:4200/api")  # fmt: skip


def test_block_slug_and_secret():
    # The shared standards check is tests/test_blocks.py::test_block_standards.
    assert VSphereWorkerPool.get_block_type_slug() == "provenflow-vsphere-worker-pool"
    assert VSphereWorkerPool.model_fields["password"].annotation is SecretStr


def test_block_hands_the_core_a_validated_config_without_showing_the_password():
    block = VSphereWorkerPool(**REQUIRED, cluster="ml", cpus=4, memory_mb=8192, workers=3)
    config = block.config()
    assert (config.cpus, config.memory_mb, config.workers, config.effective_port) == (4, 8192, 3, 443)
    assert config.name_prefix == "provenflow-vsphere-worker"
    assert config.endpoint == "https://vcenter.example:443/sdk"
    assert "hunter2-secret" not in repr(block) and "hunter2-secret" not in repr(config)
    assert config.password.get_secret_value() == "hunter2-secret"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"memory_mb": 1001}, "memory_mb: 1001 is not a multiple of 4 MB"),
        ({"prefect_api_url": "prefect:4200"}, "prefect_api_url: 'prefect:4200' is not a Prefect API URL"),
        ({"cpus": 0}, "cpus"),
        ({"vm_name_prefix": "Bad_Name"}, "vm_name_prefix: 'Bad_Name' must be lowercase"),
        ({"work_pool": "a/b"}, "work_pool: 'a/b' may not contain"),
        ({"project_source": "ftp://x/y.tar.gz"}, "is not an http"),
    ],
)
def test_block_validation_names_the_field(override, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        VSphereWorkerPool(**{**REQUIRED, **override})
    assert "hunter2-secret" not in str(info.value)
    assert isinstance(info.value, ConfigError) or "VSphereWorkerPool is invalid" in str(info.value)


def test_core_imports_neither_prefect_nor_pyvmomi_until_used():
    code = ("import sys, provenflow.workers, provenflow.workers.cloudinit, provenflow.workers.pools; "
            "print(' '.join(sys.modules))")  # fmt: skip
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "prefect" not in loaded and "pyVmomi" not in loaded
    code = "import sys, provenflow.workers.pool; print(' '.join(sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert "prefect" not in loaded


def test_cli_module_imports_nothing_heavy():
    code = "import sys, provenflow.cli.workers; print(' '.join(sys.modules))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    assert not {"prefect", "pyVmomi", "sqlalchemy", "pandas"} & loaded
