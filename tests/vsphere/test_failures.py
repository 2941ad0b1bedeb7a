"""What goes wrong with vCenter says so clearly, leaves no half-made worker behind, and never shows the password."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from provenflow.workers import (
    ProvisionFailed,
    VSphereConnectError,
    VSphereNotFound,
    connect,
    list_workers,
    scale,
)
from provenflow.workers.pool import MANAGED_BY, ORDINAL, POOL, STATE
from tests.services import free_port
from tests.vsphere.conftest import PASSWORD, TEMPLATE, find_vm, pool_config

WRONG = "Wr0ng-but-secret-Passw0rd"


def test_bad_credentials_say_so_without_the_password(inventory):
    config = pool_config(inventory, password=SecretStr(WRONG))
    with pytest.raises(VSphereConnectError) as info:
        connect(config)
    message = str(info.value)
    assert "rejected the login of user 'provenflow@vsphere.local'" in message
    assert "wrong user name or password" in message and config.endpoint in message
    assert WRONG not in message and PASSWORD not in message
    assert WRONG not in repr(config)


def test_unreachable_vcenter_says_where_and_what_to_check(inventory):
    config = pool_config(inventory, port=free_port())
    with pytest.raises(
        VSphereConnectError, match=r"cannot reach vCenter at http://127\.0\.0\.1:\d+/sdk: connection refused"
    ) as info:
        connect(config)
    assert PASSWORD not in str(info.value)


def test_https_against_a_plain_http_endpoint_suggests_the_protocol(inventory):
    config = pool_config(inventory, protocol="https", verify_tls=False)
    with pytest.raises(VSphereConnectError, match="protocol") as info:
        connect(config)
    assert PASSWORD not in str(info.value)


def test_missing_template_names_it_and_suggests_the_closest(inventory):
    config = pool_config(inventory, template="provenflow-worker-templat")
    with connect(config) as session, pytest.raises(VSphereNotFound) as info:
        scale(session, 1)
    message = str(info.value)
    assert "template VM 'provenflow-worker-templat' not found in datacenter DC0" in message
    assert f"Did you mean {TEMPLATE!r}?" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("datacenter", "DC1", "datacenter 'DC1' not found"),
        ("cluster", "DC0_C1", "cluster or host 'DC0_C1' not found in DC0. Did you mean 'DC0_C0'?"),
        ("datastore", "LocalDS_1", "datastore 'LocalDS_1' not found in DC0. Did you mean 'LocalDS_0'?"),
        ("folder", "provenflow-worker", "VM folder 'provenflow-worker' not found"),
        ("resource_pool", "ml/workers", "resource pool 'ml' not found in cluster DC0_C0"),
    ],
)
def test_missing_placement_is_named(inventory, field, value, expected):
    with (
        connect(pool_config(inventory, **{field: value})) as session,
        pytest.raises(VSphereNotFound, match=expected),
    ):
        scale(session, 1)


@pytest.mark.parametrize(
    ("method", "step"), [("ReconfigVM_Task", "reconfigure"), ("PowerOnVM_Task", "power-on")]
)
def test_a_clone_failing_halfway_is_destroyed_and_never_counted(config, inventory, method, step):
    with connect(config) as session:
        scale(session, 1)
        inventory.arm_fault("provenflow-vsphere-worker-002", method)
        with pytest.raises(ProvisionFailed) as info:
            scale(session, 2)
        message = str(info.value)
        assert f"worker VM provenflow-vsphere-worker-002 failed at {step}" in message
        assert "MethodDisabled" in message and "it was powered off and destroyed" in message
        assert "created 0 of 1 new workers" in message and info.value.cleaned_up
        assert find_vm(session, "provenflow-vsphere-worker-002") is None
        assert [w.name for w in list_workers(session)] == ["provenflow-vsphere-worker-001"]
        # The cause gone (the fault fires once), the next run makes the worker.
        assert scale(session, 2).created == ["provenflow-vsphere-worker-002"]


def test_a_vm_left_half_made_by_a_crashed_run_is_cleaned_up(config, inventory):
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    with connect(config) as session:
        template = find_vm(session, TEMPLATE)
        folder = find_vm(session, TEMPLATE).parent
        folder = next(f for f in folder.childEntity if isinstance(f, vim.Folder))
        marks = {MANAGED_BY: "provenflow", POOL: "provenflow-vsphere", ORDINAL: "1", STATE: "provisioning"}
        spec = vim.vm.CloneSpec(
            location=vim.vm.RelocateSpec(pool=find_vm(session, "DC0_C0_RP0_VM0").resourcePool),
            config=vim.vm.ConfigSpec(
                extraConfig=[vim.option.OptionValue(key=k, value=v) for k, v in marks.items()]
            ),
        )
        WaitForTask(template.CloneVM_Task(folder=folder, name="provenflow-vsphere-worker-001", spec=spec))
        (leftover,) = list_workers(session)
        assert leftover.state == "provisioning"
        result = scale(session, 1)
        assert result.cleaned_up == ["provenflow-vsphere-worker-001"] and result.before == 0
        assert [w.name for w in result.workers] == ["provenflow-vsphere-worker-002"]


def test_no_guest_ip_is_a_bounded_wait_not_a_hang(vcsim_binary, tmp_path):
    """A simulator that never reports guest IPs: the worker is still made ready, after ip_wait_seconds."""
    import subprocess
    import time

    from tests.vsphere.conftest import FOLDER, USER, Vcsim

    process = subprocess.Popen([str(vcsim_binary), "-listen", "127.0.0.1:0", "-username", USER, "-password", PASSWORD,
                                "-guest-ip-delay", "-1s"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = process.stdout.readline().strip().split("=", 1)[1]
        host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
        sim = Vcsim(url, host, int(port), process)
        config = pool_config(sim, template="DC0_C0_RP0_VM0", folder=None, ip_wait_seconds=0.5)
        assert FOLDER  # the default folder (the datacenter's) is used here
        with connect(config) as session:
            started = time.monotonic()
            (worker,) = scale(session, 1).workers
            assert 0.5 <= time.monotonic() - started < 5
            assert worker.state == "ready" and worker.ip is None
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_task_that_ends_in_error_is_reported_with_its_fault(config, inventory):
    from provenflow.workers import VSphereTaskFailed
    from provenflow.workers.vsphere import wait_for_task

    with connect(config) as session:
        running = find_vm(session, "DC0_C0_RP0_VM0")  # powered on already: a second power-on fails as a task
        with pytest.raises(
            VSphereTaskFailed, match=r"power-on of DC0_C0_RP0_VM0 failed: .*InvalidPowerState"
        ) as info:
            wait_for_task(running.PowerOnVM_Task(), "power-on of DC0_C0_RP0_VM0", timeout=10)
    assert info.value.fault.endswith("InvalidPowerState")
