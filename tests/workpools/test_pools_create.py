"""`provenflow pools create` against a real Prefect server: the three pools, idempotently."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from provenflow.workers.pools import load_kubernetes_template, process_template

IMAGE = "registry.local:5000/provenflow/flows@sha256:" + "3" * 64
NAMES = ["--process", "t-process", "--vsphere", "t-vsphere", "--kubernetes", "t-kubernetes"]


def test_pools_create_makes_three_pools_and_is_idempotent(prefect_api):
    from prefect.client.orchestration import get_client

    from provenflow.cli.workers import pools_app

    runner = CliRunner()
    first = runner.invoke(pools_app, ["create", *NAMES, "--image", IMAGE, "--json"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout) == [
        {"name": "t-process", "type": "process", "action": "created"},
        {"name": "t-vsphere", "type": "process", "action": "created"},
        {"name": "t-kubernetes", "type": "kubernetes", "action": "created"},
    ]
    again = runner.invoke(pools_app, ["create", *NAMES, "--image", IMAGE, "--json"])
    assert again.exit_code == 0, again.output
    assert [r["action"] for r in json.loads(again.stdout)] == ["unchanged"] * 3

    with get_client(sync_client=True) as client:
        kubernetes = client.read_work_pool("t-kubernetes")
        vsphere = client.read_work_pool("t-vsphere")
    assert kubernetes.type == "kubernetes"
    assert kubernetes.base_job_template == load_kubernetes_template(image=IMAGE)
    assert vsphere.type == "process" and vsphere.base_job_template == process_template()

    changed = runner.invoke(pools_app, ["create", *NAMES, "--image", IMAGE, "--namespace", "ml", "--json"])
    assert [r["action"] for r in json.loads(changed.stdout)] == ["unchanged", "unchanged", "updated"]


def test_a_pool_of_another_type_is_a_clear_error(prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    from provenflow.cli.workers import pools_app
    from provenflow.workers.errors import PoolError

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="t-clash", type="kubernetes"), overwrite=True)
    result = CliRunner().invoke(
        pools_app, ["create", "--process", "t-clash", "--skip", "vsphere", "--skip", "kubernetes"]
    )
    assert isinstance(result.exception, PoolError)
    assert "work pool 't-clash' exists with type 'kubernetes', not 'process'" in str(result.exception)


@pytest.mark.parametrize("bad", ["nothing", "k8s"])
def test_skip_names_the_known_pools(bad):
    from provenflow.cli.workers import pools_app
    from provenflow.workers.errors import PoolError

    result = CliRunner().invoke(pools_app, ["create", "--skip", bad])
    assert isinstance(result.exception, PoolError) and "expected process, vsphere or kubernetes" in str(
        result.exception
    )


def test_pools_create_defaults_to_the_last_recorded_flows_image(prefect_api, project):
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client

    from provenflow.cli.workers import pools_app
    from provenflow.ledger import models as m
    from provenflow.workspace import Workspace

    recorded = "127.0.0.1:5000/provenflow/flows@sha256:" + "4" * 64
    with Workspace.default().ledger.transaction() as session:
        session.add(m.FlowsImage(image="127.0.0.1:5000/provenflow/flows:0.1.0-x", digest="sha256:" + "4" * 64,
                                 reference=recorded, requirements_hash="0" * 64, created_at=datetime.now(UTC)))  # fmt: skip
    names = ["--kubernetes", "t-kubernetes-recorded", "--skip", "process", "--skip", "vsphere"]
    result = CliRunner().invoke(pools_app, ["create", *names])
    assert result.exit_code == 0, result.output
    assert f"the last flows image, {recorded}" in result.output
    with get_client(sync_client=True) as client:
        template = client.read_work_pool("t-kubernetes-recorded").base_job_template
    assert template == load_kubernetes_template(image=recorded)
    # --image still wins.
    result = CliRunner().invoke(pools_app, ["create", *names, "--image", IMAGE, "--json"])
    assert json.loads(result.stdout)[0]["action"] == "updated"
