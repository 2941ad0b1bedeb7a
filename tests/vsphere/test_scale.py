"""Scaling a pool of worker VMs against govmomi's vCenter simulator: up, idempotent, down, list."""

from __future__ import annotations

import json
import time

from provenflow.workers import connect, list_workers, scale
from provenflow.workers.cloudinit import decode_guestinfo, render_metadata, render_user_data
from tests.vsphere.conftest import TIMINGS, find_vm


def _vm_names(vcsim) -> set[str]:
    from pyVim.connect import Disconnect
    from pyVmomi import vim

    si = vcsim.service_instance()
    try:
        content = si.RetrieveContent()
        view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
        return {vm.name for vm in view.view}
    finally:
        Disconnect(si)


def test_scale_up_is_idempotent_and_scale_down_retires_the_newest(config, inventory):
    with connect(config) as session:
        started = time.monotonic()
        up = scale(session, 3)
        TIMINGS["scale 0→3 (s)"] = round(time.monotonic() - started, 3)
        assert up.created == ["provenflow-vsphere-worker-001", "provenflow-vsphere-worker-002",
                              "provenflow-vsphere-worker-003"]  # fmt: skip
        assert up.before == 0 and up.changed
        assert [w.name for w in up.workers] == up.created
        for worker in up.workers:
            assert worker.state == "ready" and worker.power_state == "poweredOn"
            assert worker.ip and worker.ip.startswith("192.0.2.")
            assert (worker.cpus, worker.memory_mb) == (2, 2048)
        ids = [w.moid for w in up.workers]

        again = scale(session, 3)
        assert not again.changed and again.before == 3
        assert [w.moid for w in again.workers] == ids

        down = scale(session, 1)
        assert down.retired == ["provenflow-vsphere-worker-003", "provenflow-vsphere-worker-002"]
        assert [w.name for w in down.workers] == ["provenflow-vsphere-worker-001"]
        assert [w.moid for w in list_workers(session)] == ids[:1]
    names = _vm_names(inventory)
    assert "provenflow-vsphere-worker-001" in names
    assert not names & {"provenflow-vsphere-worker-002", "provenflow-vsphere-worker-003"}


def test_list_shows_power_state_and_ip_and_scale_powers_workers_back_on(config, inventory):
    from pyVim.task import WaitForTask

    with connect(config) as session:
        scale(session, 2)
        first, second = list_workers(session)
        assert (first.power_state, second.power_state) == ("poweredOn", "poweredOn")
        assert first.ip and second.ip and first.ip != second.ip
        WaitForTask(find_vm(session, second.name).PowerOffVM_Task())
        time.sleep(0.1)
        listed = {w.name: w for w in list_workers(session)}
        assert listed[second.name].power_state == "poweredOff"
        assert listed[second.name].ip is None
        result = scale(session, 2)
        assert result.powered_on == [second.name] and not result.created
        assert all(w.power_state == "poweredOn" for w in list_workers(session))


def test_scale_to_zero_and_other_pools_untouched(config, inventory):
    other = config.model_copy(update={"work_pool": "team-b", "vm_name_prefix": "team-b"})
    with connect(config) as session:
        scale(session, 1)
    with connect(other) as session:
        assert [w.name for w in scale(session, 1).workers] == ["team-b-001"]
    with connect(config) as session:
        assert scale(session, 0).retired == ["provenflow-vsphere-worker-001"]
        assert list_workers(session) == []
    with connect(other) as session:
        assert [w.name for w in list_workers(session)] == ["team-b-001"]


def test_cloud_init_guestinfo_on_the_clones_decodes_to_the_template(config, inventory):
    with connect(config) as session:
        (worker,) = scale(session, 1).workers
        vm = find_vm(session, worker.name)
        extra = {o.key: o.value for o in vm.config.extraConfig}
        fields = {f.key: f.name for f in vm.availableField}
        tags = {fields[v.key]: v.value for v in vm.customValue}
    assert tags == {"provenflow.pool": "provenflow-vsphere"}  # the custom attribute people see in vSphere
    assert extra["guestinfo.userdata.encoding"] == "base64"
    assert extra["guestinfo.metadata.encoding"] == "base64"
    user_data, metadata = decode_guestinfo(extra)
    expected = render_user_data(
        config.template_path, hostname=worker.name, work_pool="provenflow-vsphere",
        prefect_api_url="http://10.0.0.5:4200/api", project_source="http://files.internal/provenflow-0.1.0.tar.gz",
    )  # fmt: skip
    assert user_data == expected
    assert user_data.startswith("#cloud-config\n")
    assert 'provenflow pools worker "provenflow-vsphere"' in user_data
    assert "PREFECT_API_URL='http://10.0.0.5:4200/api'" in user_data
    assert json.loads(metadata) == json.loads(render_metadata(worker.name))
    assert extra["provenflow.pool"] == "provenflow-vsphere"
