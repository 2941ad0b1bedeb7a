"""A pool of Prefect worker VMs on vSphere: list it, and scale it to a count.

    with connect(config) as session:
        list_workers(session)                 # [Worker(name, state, power_state, ip, …)], oldest first
        scale(session, 3, on_event=print)     # ScaleResult: created, retired, cleaned up

Each worker VM is a clone of the template named PREFIX-NNN, NNN one more than the highest in the pool,
so the newest worker has the highest number. It is marked as this pool's in its extraConfig *in the clone call itself*
(``provenflow.pool``, ``provenflow.ordinal``, ``provenflow.state=provisioning``), so a VM left behind by a
crash is always found; it becomes ``provenflow.state=ready`` (and gets the ``provenflow.pool`` custom
attribute, visible in the vSphere client) only once it is reconfigured, powered on and has reported its
IP address where the platform reports one. A step that fails powers the VM off and destroys it; ``scale``
also destroys any VM still marked ``provisioning`` from an earlier, interrupted run. Scaling down retires
the newest ready workers: power off, destroy. Scaling to the current count changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pyVmomi import vim, vmodl

from provenflow.workers.cloudinit import guestinfo, render_metadata, render_user_data
from provenflow.workers.errors import ProvisionFailed, VSphereTaskFailed, WorkerError
from provenflow.workers.vsphere import (
    Placement,
    VSphereSession,
    call,
    find_datacenter,
    find_folder,
    find_placement,
    wait_for_task,
)

MANAGED_BY, POOL, ORDINAL, STATE = (
    "provenflow.managed-by",
    "provenflow.pool",
    "provenflow.ordinal",
    "provenflow.state",
)
PROVISIONING, READY = "provisioning", "ready"
CUSTOM_ATTRIBUTE = "provenflow.pool"
_PROPERTIES = ["name", "config.extraConfig", "config.template", "runtime.powerState", "guest.ipAddress",
               "guest.net", "config.hardware.numCPU", "config.hardware.memoryMB"]  # fmt: skip

Events = Callable[[str], None]


@dataclass(frozen=True)
class Worker:
    """One worker VM of a pool, as vCenter reports it."""

    name: str
    ordinal: int
    state: str  # ready | provisioning (half-made, cleaned up by the next scale)
    power_state: str  # poweredOn | poweredOff | suspended
    ip: str | None
    cpus: int | None
    memory_mb: int | None
    moid: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ScaleResult:
    """What ``scale`` did, and the pool afterwards."""

    work_pool: str
    desired: int
    before: int
    created: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    cleaned_up: list[str] = field(default_factory=list)
    powered_on: list[str] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.retired or self.cleaned_up or self.powered_on)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["changed"] = self.changed
        return data


def _quiet(_: str) -> None:
    pass


def _extra_config(options: Any) -> dict[str, str]:
    """extraConfig as a dict; a key set twice keeps its last value (what vcsim reports after an update)."""
    return {o.key: str(o.value) for o in options or []}


def _ip(props: dict[str, Any]) -> str | None:
    addresses = [props.get("guest.ipAddress") or ""]
    for nic in props.get("guest.net") or []:
        addresses.extend(nic.ipAddress or [])
    ipv4 = [a for a in addresses if a and ":" not in a and not a.startswith("169.254.")]
    return ipv4[0] if ipv4 else next((a for a in addresses if a and not a.lower().startswith("fe80")), None)


def _retrieve(session: VSphereSession, root: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(vm, properties) for every VM below ROOT, in one property-collector round trip (plus pages)."""
    content = session.content
    view = call(
        "listing VMs", lambda: content.viewManager.CreateContainerView(root, [vim.VirtualMachine], True)
    )
    collector = vmodl.query.PropertyCollector
    spec = collector.FilterSpec(
        objectSet=[collector.ObjectSpec(obj=view, skip=True, selectSet=[
            collector.TraversalSpec(name="view", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[collector.PropertySpec(type=vim.VirtualMachine, pathSet=_PROPERTIES)],
    )  # fmt: skip
    pc = content.propertyCollector
    try:
        page = call(
            "reading VM properties", lambda: pc.RetrievePropertiesEx([spec], collector.RetrieveOptions())
        )
        objects = list(page.objects) if page else []
        while page and page.token:
            page = call(
                "reading VM properties", lambda token=page.token: pc.ContinueRetrievePropertiesEx(token)
            )
            objects.extend(page.objects)
    finally:
        call("closing an inventory view", view.DestroyView)
    return [(o.obj, {p.name: p.val for p in o.propSet}) for o in objects]


def _scope(session: VSphereSession, placement: Placement | None) -> Any:
    if placement is not None:
        return placement.folder
    return find_folder(session, find_datacenter(session))


def _managed(session: VSphereSession, placement: Placement | None = None) -> list[tuple[Any, Worker]]:
    pool = session.config.work_pool
    found = []
    for vm, props in _retrieve(session, _scope(session, placement)):
        extra = _extra_config(props.get("config.extraConfig"))
        if extra.get(POOL) != pool or extra.get(MANAGED_BY) != "provenflow" or props.get("config.template"):
            continue
        try:
            ordinal = int(extra.get(ORDINAL, "0"))
        except ValueError:
            ordinal = 0
        found.append((vm, Worker(
            name=props.get("name", vm._moId), ordinal=ordinal, state=extra.get(STATE, PROVISIONING),
            power_state=str(props.get("runtime.powerState", "unknown")), ip=_ip(props),
            cpus=props.get("config.hardware.numCPU"), memory_mb=props.get("config.hardware.memoryMB"), moid=vm._moId,
        )))  # fmt: skip
    return sorted(found, key=lambda pair: (pair[1].ordinal, pair[1].name))


def list_workers(session: VSphereSession) -> list[Worker]:
    """The pool's worker VMs (ready ones and leftovers still marked provisioning), oldest first."""
    return [worker for _, worker in _managed(session)]


# -- changing the pool -----------------------------------------------------------------------------


def _option(key: str, value: str) -> Any:
    return vim.option.OptionValue(key=key, value=value)


def _destroy(vm: Any, name: str, timeout: float) -> None:
    """Power off (if on) and destroy; a VM that is already gone counts as destroyed."""
    try:
        if vm.runtime.powerState != vim.VirtualMachinePowerState.poweredOff:
            try:
                wait_for_task(
                    call(f"power-off of {name}", vm.PowerOffVM_Task), f"power-off of {name}", timeout
                )
            except VSphereTaskFailed as error:
                if error.fault not in ("vim.fault.InvalidPowerState", "InvalidPowerState"):
                    raise
        wait_for_task(call(f"destroy of {name}", vm.Destroy_Task), f"destroy of {name}", timeout)
    except vmodl.fault.ManagedObjectNotFound:
        return
    except VSphereTaskFailed as error:
        if error.fault and error.fault.endswith("ManagedObjectNotFound"):
            return
        raise


def _wait_for_ip(vm: Any, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    delay = 0.1
    while True:
        guest = call("reading the guest IP", lambda: vm.guest)
        ip = _ip(
            {"guest.ipAddress": guest.ipAddress if guest else None, "guest.net": guest.net if guest else []}
        )
        if ip or time.monotonic() >= deadline:
            return ip
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 2.0)


def _custom_attribute_key(session: VSphereSession) -> int | None:
    """The key of the provenflow.pool custom attribute, created on first use; None where unsupported."""
    manager = session.content.customFieldsManager
    if manager is None:  # ESXi without vCenter
        return None
    for definition in manager.field or []:
        if definition.name == CUSTOM_ATTRIBUTE and definition.managedObjectType in (vim.VirtualMachine, None):
            return definition.key
    try:
        return manager.AddCustomFieldDef(name=CUSTOM_ATTRIBUTE, moType=vim.VirtualMachine).key
    except vmodl.MethodFault:
        return None  # no privilege for custom attributes: extraConfig alone marks the VMs


def _tag(session: VSphereSession, vm: Any, name: str, on_event: Events) -> None:
    """Set the provenflow.pool custom attribute (for people; extraConfig is what provenflow reads)."""
    key = _custom_attribute_key(session)
    if key is None:
        return
    manager = session.content.customFieldsManager
    try:
        call(f"tagging {name}", lambda: manager.SetField(entity=vm, key=key, value=session.config.work_pool))
    except VSphereTaskFailed as error:
        on_event(f"{name}: custom attribute {CUSTOM_ATTRIBUTE} not set ({error}); extraConfig marks it")


def provision(
    session: VSphereSession, placement: Placement, ordinal: int, on_event: Events = _quiet
) -> Worker:
    """Clone, configure, power on and mark ready one worker VM; on failure destroy it and raise ProvisionFailed."""
    config = session.config
    name = f"{config.name_prefix}-{ordinal:03d}"
    timeout = config.task_timeout_seconds
    user_data = render_user_data(
        config.template_path, hostname=name, work_pool=config.work_pool, prefect_api_url=config.prefect_api_url,
        project_source=config.project_source, wheelhouse_url=config.wheelhouse_url,
        ssh_authorized_keys=config.ssh_authorized_keys,
    )  # fmt: skip
    marks = {MANAGED_BY: "provenflow", POOL: config.work_pool, ORDINAL: str(ordinal), STATE: PROVISIONING}
    extra = [_option(k, v) for k, v in {**marks, **guestinfo(user_data, render_metadata(name))}.items()]
    location = vim.vm.RelocateSpec(pool=placement.resource_pool)
    if placement.datastore is not None:
        location.datastore = placement.datastore
    spec = vim.vm.CloneSpec(
        location=location, powerOn=False, template=False,
        config=vim.vm.ConfigSpec(numCPUs=config.cpus, memoryMB=config.memory_mb, extraConfig=extra),
    )  # fmt: skip
    step = "clone"
    vm = None
    try:
        on_event(f"{name}: cloning {placement.template.name}")
        task = call(
            f"clone of {name}",
            lambda: placement.template.CloneVM_Task(folder=placement.folder, name=name, spec=spec),
        )
        vm = wait_for_task(task, f"clone of {placement.template.name} to {name}", timeout)
        step = "reconfigure"
        annotation = (
            f"Prefect worker of work pool {config.work_pool}, managed by provenflow; do not edit by hand."
        )
        size = vim.vm.ConfigSpec(numCPUs=config.cpus, memoryMB=config.memory_mb, annotation=annotation)
        wait_for_task(
            call(f"reconfigure of {name}", lambda: vm.ReconfigVM_Task(spec=size)),
            f"reconfigure of {name}",
            timeout,
        )
        step = "power-on"
        on_event(f"{name}: powering on")
        wait_for_task(call(f"power-on of {name}", vm.PowerOnVM_Task), f"power-on of {name}", timeout)
        step = "guest IP"
        ip = _wait_for_ip(vm, config.ip_wait_seconds)
        on_event(
            f"{name}: guest IP {ip}"
            if ip
            else f"{name}: no guest IP reported within {config.ip_wait_seconds:g} s"
        )
        step = "mark ready"
        _tag(session, vm, name, on_event)
        ready = vim.vm.ConfigSpec(extraConfig=[_option(STATE, READY)])
        wait_for_task(
            call(f"marking {name} ready", lambda: vm.ReconfigVM_Task(spec=ready)),
            f"marking {name} ready",
            timeout,
        )
    except BaseException as error:
        if vm is None and step == "clone":
            vm = _find_by_name(session, placement, name)  # a clone that failed late may have left a VM
        cleaned, note = True, ""
        if vm is not None:
            on_event(f"{name}: {step} failed; powering off and destroying it")
            try:
                _destroy(vm, name, timeout)
            except WorkerError as cleanup:
                cleaned, note = False, f" Cleaning up failed too ({cleanup}); delete VM {name} by hand."
        if not isinstance(error, Exception):
            raise
        detail = str(error) if isinstance(error, WorkerError) else f"{type(error).__name__}: {error}"
        outcome = (
            "it was powered off and destroyed" if vm is not None and cleaned else "no VM was left behind"
        )
        raise ProvisionFailed(
            f"worker VM {name} failed at {step}: {detail}; {outcome}.{note}", vm=name, cleaned_up=cleaned
        ) from None
    return Worker(name, ordinal, READY, "poweredOn", ip, config.cpus, config.memory_mb, vm._moId)


def _find_by_name(session: VSphereSession, placement: Placement, name: str) -> Any | None:
    try:
        for vm, props in _retrieve(session, placement.folder):
            if (
                props.get("name") == name
                and _extra_config(props.get("config.extraConfig")).get(POOL) == session.config.work_pool
            ):
                return vm
    except WorkerError:
        pass
    return None


def scale(session: VSphereSession, count: int, on_event: Events = _quiet) -> ScaleResult:
    """Make the pool COUNT ready, powered-on workers: clean up leftovers, add or retire the newest."""
    if count < 0:
        raise WorkerError(f"count: {count} is negative; give the number of worker VMs wanted (0 or more)")
    started = time.monotonic()
    config = session.config
    placement = find_placement(session)
    managed = _managed(session, placement)
    timeout = config.task_timeout_seconds
    cleaned, retired, created, powered_on = [], [], [], []
    for vm, worker in managed:
        if worker.state != READY:
            on_event(f"{worker.name}: left half-made by an earlier run; destroying it")
            _destroy(vm, worker.name, timeout)
            cleaned.append(worker.name)
    ready = [(vm, w) for vm, w in managed if w.state == READY]
    before = len(ready)
    next_ordinal = max((w.ordinal for _, w in managed), default=0) + 1
    if len(ready) > count:
        for vm, worker in sorted(ready, key=lambda pair: pair[1].ordinal, reverse=True)[: len(ready) - count]:
            on_event(f"{worker.name}: retiring (power off, destroy)")
            _destroy(vm, worker.name, timeout)
            retired.append(worker.name)
    for vm, worker in ready[:count]:
        if worker.power_state != "poweredOn":
            on_event(f"{worker.name}: {worker.power_state}; powering on")
            wait_for_task(
                call(f"power-on of {worker.name}", vm.PowerOnVM_Task), f"power-on of {worker.name}", timeout
            )
            powered_on.append(worker.name)
    for ordinal in range(next_ordinal, next_ordinal + max(0, count - len(ready))):
        try:
            created.append(provision(session, placement, ordinal, on_event).name)
        except ProvisionFailed as error:
            done = f"created {len(created)} of {count - len(ready)} new workers ({', '.join(created) or 'none'}); "
            raise ProvisionFailed(
                f"{done}{error} Fix the cause and run scale again.", vm=error.vm, cleaned_up=error.cleaned_up
            ) from None
    return ScaleResult(
        work_pool=config.work_pool, desired=count, before=before, created=created, retired=retired,
        cleaned_up=cleaned, powered_on=powered_on, workers=[w for _, w in _managed(session, placement) if w.state == READY],
        seconds=round(time.monotonic() - started, 3),
    )  # fmt: skip
