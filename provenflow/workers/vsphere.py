"""vCenter through pyvmomi: connect, wait for tasks, and find where worker VMs go.

    with connect(config) as session:                 # VSphereConnectError: credentials, reachability, TLS
        placement = find_placement(session)          # VSphereNotFound names what is missing, with suggestions
        vm = wait_for_task(placement.template.CloneVM_Task(...), "clone of worker-001", timeout)

Every vSphere fault that reaches a caller becomes a provenflow ``WorkerError`` whose message names the step,
the fault's type and its message; no message carries the password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pyVim.connect import Disconnect, SmartConnect
from pyVmomi import vim, vmodl

from provenflow.errors import did_you_mean
from provenflow.redact import redact
from provenflow.workers.config import VSphereWorkerPoolConfig
from provenflow.workers.errors import VSphereConnectError, VSphereNotFound, VSphereTaskFailed

T = TypeVar("T")
# Attributes of common faults that say what was wrong; shown after the fault's message.
_FAULT_DETAILS = ("invalidProperty", "name", "file", "existingState", "requestedState", "datastore", "reason")


@dataclass
class VSphereSession:
    """A logged-in connection to one vCenter, for one worker pool's settings."""

    config: VSphereWorkerPoolConfig
    service_instance: Any

    @property
    def content(self) -> Any:
        return self.service_instance.RetrieveContent()

    def __enter__(self) -> VSphereSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # logging out of a vCenter that went away is not an error
            Disconnect(self.service_instance)


def _connect_error(config: VSphereWorkerPoolConfig, error: BaseException) -> VSphereConnectError:
    where = config.endpoint
    password = config.password.get_secret_value()
    if isinstance(error, vim.fault.InvalidLogin):
        return VSphereConnectError(
            f"vCenter at {where} rejected the login of user {config.username!r} (InvalidLogin): wrong user "
            "name or password; correct them in the worker pool block"
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        return VSphereConnectError(
            f"the TLS certificate of vCenter at {where} could not be verified ({error.verify_message}); "
            "add its CA to the system trust store, or set verify_tls to false on a trusted network"
        )
    if isinstance(error, ssl.SSLError):
        return VSphereConnectError(
            f"TLS with vCenter at {where} failed ({redact(str(error), password)}); check protocol and port "
            "(vcsim and plain-HTTP endpoints need protocol 'http')"
        )
    if isinstance(error, ConnectionRefusedError):
        return VSphereConnectError(
            f"cannot reach vCenter at {where}: connection refused; check host, port and protocol, and that "
            "vCenter is running"
        )
    if isinstance(error, (socket.timeout, TimeoutError)):
        return VSphereConnectError(
            f"cannot reach vCenter at {where}: no answer within {config.connect_timeout_seconds:g} s; check "
            "host, port and firewalls"
        )
    if isinstance(error, socket.gaierror):
        return VSphereConnectError(
            f"cannot reach vCenter at {where}: unknown host {config.host!r}; check host"
        )
    if isinstance(error, OSError):
        reason = error.strerror or type(error).__name__
        return VSphereConnectError(
            f"cannot reach vCenter at {where}: {redact(reason, password)}; check host and port"
        )
    if isinstance(error, vmodl.MethodFault):
        return VSphereConnectError(
            f"vCenter at {where} refused the connection: {redact(describe_fault(error), password)}"
        )
    return VSphereConnectError(
        f"cannot connect to vCenter at {where}: {type(error).__name__}: "
        f"{redact(str(error), password, config.username if len(config.username) > 3 else None)[:300]}; "
        "check host, port and protocol (is it a vCenter or ESXi SDK endpoint?)"
    )


def open_session(config: VSphereWorkerPoolConfig) -> VSphereSession:
    """Log in to vCenter; raises VSphereConnectError saying what to fix."""
    try:
        si = SmartConnect(
            protocol=config.protocol,
            host=config.host,
            port=config.effective_port,
            user=config.username,
            pwd=config.password.get_secret_value(),
            disableSslCertValidation=not config.verify_tls,
            httpConnectionTimeout=config.connect_timeout_seconds,
        )
    except Exception as error:  # every failure becomes one clear, password-free message
        raise _connect_error(config, error) from None
    return VSphereSession(config, si)


def connect(config: VSphereWorkerPoolConfig) -> VSphereSession:
    """A session to use in a ``with`` block, which logs out at its end."""
    return open_session(config)


def describe_fault(fault: Any) -> str:
    """'message (vim.fault.Type: detail=value)' for a vSphere fault, whatever the server filled in."""
    kind = type(fault).__name__
    message = getattr(fault, "msg", None) or getattr(fault, "localizedMessage", None) or ""
    details = []
    for attribute in _FAULT_DETAILS:
        value = getattr(fault, attribute, None)
        if isinstance(value, (str, int)) and value != "":
            details.append(f"{attribute}={value}")
        elif hasattr(value, "_moId"):
            details.append(f"{attribute}={value._moId}")
    detail = f"{kind}: {', '.join(details)}" if details else kind
    return f"{message} ({detail})" if message and message not in kind else detail


def call(what: str, function: Callable[[], T]) -> T:
    """Run one vSphere call; a fault becomes VSphereTaskFailed naming WHAT."""
    try:
        return function()
    except vmodl.MethodFault as fault:
        raise VSphereTaskFailed(f"{what} failed: {describe_fault(fault)}", type(fault).__name__) from None
    except OSError as error:
        raise VSphereConnectError(f"{what} failed: lost the connection to vCenter ({error})") from None


def wait_for_task(task: Any, what: str, timeout: float) -> Any:
    """Poll a vSphere task until it ends; its result, or VSphereTaskFailed with the task's fault.

    A task still running after TIMEOUT seconds is asked to cancel and reported as failed.
    """
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        info = call(f"reading the state of {what}", lambda: task.info)
        if info.state == vim.TaskInfo.State.success:
            return info.result
        if info.state == vim.TaskInfo.State.error:
            fault = info.error
            raise VSphereTaskFailed(f"{what} failed: {describe_fault(fault)}", type(fault).__name__)
        if time.monotonic() > deadline:
            with contextlib.suppress(Exception):  # not every task can be cancelled
                task.CancelTask()
            raise VSphereTaskFailed(
                f"{what} did not finish within {timeout:g} s (task {task._moId} is {info.state}); it was asked "
                "to cancel. Raise task_timeout_seconds if vCenter is just slow"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


# -- inventory -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """Where a pool's worker VMs are cloned from and to."""

    datacenter: Any
    template: Any
    resource_pool: Any
    folder: Any
    datastore: Any | None  # None: the template's own datastore

    def describe(self) -> dict[str, str | None]:
        return {
            "datacenter": self.datacenter.name,
            "template": self.template.name,
            "resource_pool": self.resource_pool.name,
            "folder": self.folder.name,
            "datastore": self.datastore.name if self.datastore is not None else None,
        }


def objects_of(session: VSphereSession, root: Any, kind: type) -> list[Any]:
    """Every managed object of KIND below ROOT (a container view, destroyed afterwards)."""
    content = session.content
    view = call("listing the inventory", lambda: content.viewManager.CreateContainerView(root, [kind], True))
    try:
        return list(view.view)
    finally:
        call("closing an inventory view", view.DestroyView)


def _by_name(items: list[Any], name: str, what: str, where: str, hint: str) -> Any:
    found = [item for item in items if item.name == name]
    if len(found) == 1:
        return found[0]
    names = sorted({item.name for item in items})
    if found:
        raise VSphereNotFound(f"{len(found)} {what}s are named {name!r} in {where}; {hint}")
    listing = ", ".join(names[:10]) + (" …" if len(names) > 10 else "") if names else "none"
    raise VSphereNotFound(
        f"{what} {name!r} not found in {where}.{did_you_mean(name, names)} There: {listing}. {hint}"
    )


def find_datacenter(session: VSphereSession) -> Any:
    config = session.config
    datacenters = objects_of(session, session.content.rootFolder, vim.Datacenter)
    if config.datacenter:
        return _by_name(
            datacenters, config.datacenter, "datacenter", config.endpoint, "Set datacenter to one of them."
        )
    if len(datacenters) == 1:
        return datacenters[0]
    names = ", ".join(sorted(d.name for d in datacenters)) or "none"
    raise VSphereNotFound(
        f"vCenter at {config.endpoint} has {len(datacenters)} datacenters ({names}); set datacenter"
    )


def find_folder(session: VSphereSession, datacenter: Any) -> Any:
    path = (session.config.folder or "").strip("/")
    folder = datacenter.vmFolder
    walked = []
    for part in [p for p in path.split("/") if p]:
        children = [c for c in folder.childEntity if isinstance(c, vim.Folder)]
        walked.append(part)
        folder = _by_name(
            children, part, "VM folder", f"{datacenter.name}/vm/{'/'.join(walked[:-1])}",
            "Create the folder in vSphere, or correct folder (a path below the datacenter's VM folder).",
        )  # fmt: skip
    return folder


def _resource_pool(session: VSphereSession, datacenter: Any, template: Any) -> Any:
    config = session.config
    computes = objects_of(session, datacenter.hostFolder, vim.ComputeResource)
    if config.cluster:
        compute = _by_name(computes, config.cluster, "cluster or host", datacenter.name, "Correct cluster.")
        pool = compute.resourcePool
        for part in [p for p in (config.resource_pool or "").strip("/").split("/") if p]:
            pool = _by_name(
                list(pool.resourcePool), part, "resource pool", f"cluster {compute.name}",
                "Create it, or correct resource_pool (a path below the cluster's root pool).",
            )  # fmt: skip
        return pool
    if config.resource_pool:
        pools = objects_of(session, datacenter.hostFolder, vim.ResourcePool)
        return _by_name(
            pools, config.resource_pool.strip("/").rsplit("/", 1)[-1], "resource pool", datacenter.name,
            "Set cluster too, to name a pool by its path.",
        )  # fmt: skip
    if template.resourcePool is not None:
        return template.resourcePool
    if len(computes) == 1:
        return computes[0].resourcePool
    names = ", ".join(sorted(c.name for c in computes)) or "none"
    raise VSphereNotFound(
        f"datacenter {datacenter.name} has {len(computes)} clusters/hosts ({names}) and template "
        f"{template.name!r} names no resource pool; set cluster (and resource_pool)"
    )


def find_template(session: VSphereSession, datacenter: Any) -> Any:
    name = session.config.template
    vms = objects_of(session, datacenter.vmFolder, vim.VirtualMachine)
    found = [vm for vm in vms if vm.name == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise VSphereNotFound(
            f"{len(found)} VMs are named {name!r} in datacenter {datacenter.name}; rename all but the template"
        )
    templates = sorted(vm.name for vm in vms if vm.config is not None and vm.config.template)
    listing = ", ".join(templates[:10]) if templates else "none"
    raise VSphereNotFound(
        f"template VM {name!r} not found in datacenter {datacenter.name}."
        f"{did_you_mean(name, [vm.name for vm in vms])} Templates there: {listing}. Create the template "
        "(a VM with cloud-init and VMware Tools, converted to a template) or correct template in the block"
    )


def find_placement(session: VSphereSession) -> Placement:
    """Resolve the block's names to vSphere objects; VSphereNotFound names the first one missing."""
    config = session.config
    datacenter = find_datacenter(session)
    template = find_template(session, datacenter)
    pool = _resource_pool(session, datacenter, template)
    folder = find_folder(session, datacenter)
    datastore = None
    if config.datastore:
        datastore = _by_name(
            list(datacenter.datastore), config.datastore, "datastore", datacenter.name,
            "Correct datastore, or leave it empty to use the template's.",
        )  # fmt: skip
    return Placement(datacenter, template, pool, folder, datastore)
