"""govmomi's vCenter simulator (infra/vcsim), one per test: built once from Debian's Go sources, started on
127.0.0.1 (a free port it picks) with its own user and password, and a template to clone workers from."""

from __future__ import annotations

import os
import select
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.services import unavailable

REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "provenflow@vsphere.local", "Vcsim-s3cret-Passw0rd"
TEMPLATE = "provenflow-worker-template"
FOLDER = "provenflow-workers"
TIMINGS: dict[str, float] = {}


@dataclass
class Vcsim:
    url: str
    host: str
    port: int
    process: subprocess.Popen

    def arm_fault(self, vm: str, method: str) -> None:
        """Disable METHOD (e.g. PowerOnVM_Task) on the next VM a task creates under the name VM."""
        request = urllib.request.Request(f"http://{self.host}:{self.port}/provenflow/faults?vm={vm}&method={method}",
                                         method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    def service_instance(self):
        from pyVim.connect import SmartConnect

        return SmartConnect(host=self.host, port=self.port, user=USER, pwd=PASSWORD, protocol="http")


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    """The simulator binary: $PROVENFLOW_VCSIM_BIN, or built by .ci/vcsim.sh (without installing packages)."""
    if path := os.environ.get("PROVENFLOW_VCSIM_BIN"):
        if not os.access(path, os.X_OK):
            unavailable(f"PROVENFLOW_VCSIM_BIN={path} is not an executable")
        return Path(path)
    started = time.monotonic()
    done = subprocess.run([str(REPO / ".ci" / "vcsim.sh")], env={**os.environ, "VCSIM_NO_INSTALL": "1"},
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    TIMINGS["vcsim build or check (s)"] = round(time.monotonic() - started, 2)
    if done.returncode == 3:
        unavailable(
            f"cannot build the vSphere simulator: {done.stderr.strip()} (or run .ci/vcsim.sh as root)"
        )
    if done.returncode != 0:
        unavailable(f".ci/vcsim.sh failed ({done.returncode}): {done.stderr.strip()[-800:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def vcsim(vcsim_binary: Path) -> Iterator[Vcsim]:
    started = time.monotonic()
    process = subprocess.Popen([str(vcsim_binary), "-listen", "127.0.0.1:0", "-username", USER, "-password", PASSWORD,
                                "-guest-ip-delay", "200ms"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    ready, _, _ = select.select([process.stdout], [], [], 30)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("PROVENFLOW_VCSIM_URL="):
        process.kill()
        unavailable(f"the vSphere simulator did not start: {line!r} {process.stderr.read()[-800:]}")
    url = line.strip().split("=", 1)[1]
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    TIMINGS["vcsim start (s)"] = round(time.monotonic() - started, 3)
    yield Vcsim(url, host, int(port), process)
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def inventory(vcsim: Vcsim) -> Vcsim:
    """A template VM (a clone of the simulator's DC0_C0_RP0_VM0, marked as template) and a workers folder."""
    from pyVim.connect import Disconnect
    from pyVim.task import WaitForTask
    from pyVmomi import vim

    si = vcsim.service_instance()
    try:
        datacenter = si.RetrieveContent().rootFolder.childEntity[0]
        source = next(vm for vm in datacenter.vmFolder.childEntity if vm.name == "DC0_C0_RP0_VM0")
        spec = vim.vm.CloneSpec(location=vim.vm.RelocateSpec(pool=source.resourcePool), template=True)
        WaitForTask(source.CloneVM_Task(folder=datacenter.vmFolder, name=TEMPLATE, spec=spec))
        datacenter.vmFolder.CreateFolder(FOLDER)
    finally:
        Disconnect(si)
    return vcsim


def find_vm(session, name: str):
    """The VM named NAME, or None."""
    from pyVmomi import vim

    content = session.content
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        return next((vm for vm in view.view if vm.name == name), None)
    finally:
        view.DestroyView()


def pool_config(vcsim: Vcsim, **overrides):
    from provenflow.workers import VSphereWorkerPoolConfig

    values = dict(
        host=vcsim.host, port=vcsim.port, protocol="http", username=USER, password=SecretStr(PASSWORD),
        datacenter="DC0", cluster="DC0_C0", datastore="LocalDS_0", folder=FOLDER, template=TEMPLATE,
        cpus=2, memory_mb=2048, workers=1, work_pool="provenflow-vsphere",
        prefect_api_url="http://10.0.0.5:4200/api", project_source="http://files.internal/provenflow-0.1.0.tar.gz",
        ip_wait_seconds=5, task_timeout_seconds=30, connect_timeout_seconds=5,
    )  # fmt: skip
    values.update(overrides)
    return VSphereWorkerPoolConfig(**values)


@pytest.fixture
def config(inventory: Vcsim):
    return pool_config(inventory)


def pytest_terminal_summary(terminalreporter) -> None:
    if TIMINGS:
        terminalreporter.write_line(
            "vSphere simulator timings: " + ", ".join(f"{k} {v}" for k, v in TIMINGS.items())
        )
