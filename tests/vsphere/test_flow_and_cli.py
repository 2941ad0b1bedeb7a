"""The provision-workers flow and `provenflow workers` against a real Prefect server and the simulator."""

from __future__ import annotations

import json

from pydantic import SecretStr
from typer.testing import CliRunner

from tests.vsphere.conftest import FOLDER, PASSWORD, TEMPLATE, USER


def _save_block(inventory, name: str, workers: int = 2) -> None:
    from provenflow.blocks.vsphere import VSphereWorkerPool

    VSphereWorkerPool(
        host=inventory.host, port=inventory.port, protocol="http", username=USER, password=SecretStr(PASSWORD),
        datacenter="DC0", cluster="DC0_C0", folder=FOLDER, template=TEMPLATE, cpus=1, memory_mb=1024,
        workers=workers, work_pool="provenflow-vsphere", prefect_api_url="http://10.0.0.5:4200/api", ip_wait_seconds=5,
    ).save(name, overwrite=True)  # fmt: skip


def test_flow_scales_to_the_blocks_count_and_keeps_the_password_out_of_prefect(prefect_api, inventory):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    from provenflow.flows.provision_workers import provision_workers

    _save_block(inventory, "vsphere-flow-test", workers=2)
    state = provision_workers(pool_block="vsphere-flow-test", return_state=True)
    result = state.result()
    assert [w["name"] for w in result["workers"]] == [
        "provenflow-vsphere-worker-001",
        "provenflow-vsphere-worker-002",
    ]
    assert provision_workers(pool_block="vsphere-flow-test", count=2)["changed"] is False
    APILogHandler().flush()
    only_this_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=only_this_run)
    assert any("provenflow-vsphere-worker-001: cloning" in log.message for log in logs)
    assert all(PASSWORD not in log.message for log in logs)


def test_cli_scale_and_list(prefect_api, inventory):
    from provenflow.cli.workers import workers_app

    _save_block(inventory, "vsphere-cli-test")
    runner = CliRunner()
    scaled = runner.invoke(workers_app, ["scale", "vsphere-cli-test", "--count", "3", "--json"])
    assert scaled.exit_code == 0, scaled.output
    assert len(json.loads(scaled.stdout)["created"]) == 3
    listed = runner.invoke(workers_app, ["list", "vsphere-cli-test", "--json"])
    assert listed.exit_code == 0, listed.output
    workers = json.loads(listed.stdout)["workers"]
    assert [(w["state"], w["power_state"]) for w in workers] == [("ready", "poweredOn")] * 3
    assert all(w["ip"] for w in workers)
    table = runner.invoke(workers_app, ["list", "vsphere-cli-test"])
    assert table.exit_code == 0 and table.stdout.count("poweredOn") == 3 and "192.0.2." in table.stdout


def test_cli_unknown_block_is_a_clear_error(prefect_api):
    from provenflow.cli.workers import workers_app
    from provenflow.errors import ConfigError

    result = CliRunner().invoke(workers_app, ["list", "no-such-pool"])
    assert isinstance(result.exception, ConfigError)
    assert "no VSphereWorkerPool block named 'no-such-pool'" in str(result.exception)
