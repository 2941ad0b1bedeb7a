"""Custom blocks: Prefect's block standards, secrets kept secret, and flows that use them."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from provenflow.blocks.drift import DriftPolicy
from provenflow.blocks.kubernetes import KubernetesTarget
from provenflow.blocks.ledger import LedgerDatabase
from provenflow.blocks.performance import PerformancePolicy
from provenflow.blocks.registry import ContainerRegistry
from provenflow.blocks.store import ArtifactStore
from provenflow.blocks.vsphere import VSphereWorkerPool

BLOCKS = [
    ArtifactStore, LedgerDatabase, KubernetesTarget, ContainerRegistry, DriftPolicy, VSphereWorkerPool,
    PerformancePolicy,
]  # fmt: skip


@pytest.mark.parametrize("block", BLOCKS)
def test_block_standards(block):
    assert block.get_description()
    assert block.get_block_type_slug().startswith("provenflow-")
    for name, field in block.model_fields.items():
        assert field.description and field.description.endswith("."), (
            f"{block.__name__}.{name} needs a description"
        )
    example = block.get_code_example()
    assert re.search(rf"from .* import {block.__name__}", example)
    assert re.search(rf'= {block.__name__}\.load\("BLOCK_NAME"\)', example)


def test_postgres_ledger_block_needs_a_host():
    with pytest.raises(ValueError, match="host"):
        LedgerDatabase(driver="postgresql", database="ledger")


def test_secrets_stay_out_of_reprs_and_errors():
    block = LedgerDatabase(
        host="db.invalid", database="ledger", username="pf", password=SecretStr("hunter2-secret")
    )
    assert "hunter2-secret" not in repr(block)
    assert "hunter2-secret" in block.url()  # handed to the engine only
    from provenflow.errors import LedgerError

    with pytest.raises(LedgerError) as info:
        block.get_ledger()
    assert "hunter2-secret" not in str(info.value) and "***" in str(info.value)


def test_flow_uses_ledger_and_store_blocks(prefect_api, project, penguins, postgres, tmp_path):
    from prefect.client.orchestration import get_client

    from provenflow.flows.data_run import data_run
    from provenflow.ledger import models as m
    from provenflow.ledger.db import Ledger

    database = postgres.create_database("block_ledger")
    LedgerDatabase(host="127.0.0.1", port=postgres.port, database="block_ledger", username="postgres",
                   password=SecretStr("s3cret-value")).save("team-ledger", overwrite=True)  # fmt: skip
    ArtifactStore(url=str(tmp_path / "team-store")).save("team-store", overwrite=True)

    result = data_run(
        name="penguins", source=str(penguins), ledger_block="team-ledger", store_block="team-store"
    )
    assert (tmp_path / "team-store" / "objects").is_dir()
    ledger = Ledger(database)
    with ledger.reader() as session:
        run = session.get(m.Run, result["run_id"])
        assert run.parameters == {
            "name": "penguins",
            "source": str(penguins),
            "suite": None,
            "register_version": True,
        }
        assert "s3cret-value" not in str(run.parameters)
    ledger.dispose()
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(result["run_id"])
        assert "s3cret-value" not in str(flow_run.parameters)
        logs = client.read_logs()
        assert all("s3cret-value" not in log.message for log in logs)
