"""`provenflow up` / `down`: the project's Prefect server, block types, work pools, deployments and a
process worker, started together so the Prefect UI can launch, schedule and trigger every flow.

Each step is idempotent, so `up` also repairs a half-started stack. Background processes (the worker,
and whatever `BACKGROUND` grows, e.g. a warm runner) keep a pid file and a log in .provenflow/.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provenflow.errors import ConfigError
from provenflow.platform.pidfile import live_pid, terminate
from provenflow.settings import get_settings

PROCESS_POOL = "provenflow-process"
RETRAIN_AUTOMATION = "retrain"  # prefect deploy names a deployment trigger's automation after it


@dataclass(frozen=True)
class Background:
    """A long-running helper process of the stack; ``argv`` runs with the project's server as its API."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready: Callable[[str], bool] | None = None  # given the API URL: is it serving yet?


def _worker() -> Background:
    # Prefect's process worker, whose flow runs fork from the warm runner (provenflow.platform.worker):
    # a deployment run, a schedule or a retrain starts with the imports done, as a CLI command does.
    return Background(
        "worker",
        [sys.executable, "-m", "provenflow.platform.worker", "--pool", PROCESS_POOL],
        # Poll every 2 s rather than 10 s: a run launched from the UI starts promptly.
        env={"PREFECT_WORKER_QUERY_SECONDS": "2", "PREFECT_WORKER_HEARTBEAT_SECONDS": "10"},
        ready=lambda api: bool(online_workers(PROCESS_POOL)),
    )


def background() -> list[Background]:
    """The stack's background processes, in start order. Hook: add a warm runner here."""
    return [_worker()]


@dataclass
class UpReport:
    ui_url: str
    blocks: list[str]
    pools: list[dict]
    deployments: list[str]
    automations: list[str]
    processes: dict[str, int]
    authenticated: bool = False  # the API refuses clients without the auth string

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def up(say: Callable[[str], None] = lambda _msg: None, auth: bool = False) -> UpReport:
    """Start (or complete) the stack; returns what is live. ``auth``: the server requires an auth
    string (created in the home folder, mode 0600, handed to the worker and to this project's CLI)."""
    from provenflow.platform import server

    if auth:
        server.enable_auth()

    # Before Prefect is first imported (by server.start), which reads its settings once per process.
    os.environ["PREFECT_API_URL"] = server.api_url()
    server.use_auth()  # the workers started below inherit it
    say("starting the Prefect server")
    status = server.start()
    authenticated = not server.open_to_anyone(status.api_url)
    if server.auth_string() and not authenticated:
        raise ConfigError(
            f"the Prefect server at {status.ui_url} runs without authentication (it was started before "
            "the auth string existed); run `provenflow down`, then `provenflow up --auth`"
        )
    from provenflow.platform import runner

    runner.start()  # flow and read commands fork from it once it listens (issue 12's warm runner)
    api = status.api_url
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}):
        say("registering provenflow's block types")
        blocks = register_blocks()
        say("creating the work pools")
        pools = create_pools()
        deployments, automations = deployments_and_automations()
        marker = get_settings().ensure_home() / "deployed.fingerprint"
        current = _fingerprint()
        # Deploying imports every flow (~30 s): skip it when prefect.yaml and the flows are as deployed.
        stale = not marker.exists() or marker.read_text() != current
        if stale or not set(_wanted()) <= set(deployments):
            say(f"deploying every flow of {_deploy_file()}")
            check_pools_exist()
            deploy_all(api)
            marker.write_text(current)
            deployments, automations = deployments_and_automations()
        for name in background():
            say(f"starting the {name.name}")
            start_background(name, api)
    processes = {b.name: pid for b in background() if (pid := _pid(b.name)) is not None}
    return UpReport(status.ui_url, blocks, pools, deployments, automations, processes, authenticated)


def down() -> dict[str, object]:
    """Stop the background processes, local model servers, then the server; what was stopped."""
    from provenflow.platform import server

    stopped: dict[str, object] = {}
    for proc in reversed(background()):
        stopped[proc.name] = stop_background(proc.name)
    stopped["model servers"] = stop_model_servers()
    stopped["pool workers"] = stop_pool_workers()
    from provenflow.platform import runner

    stopped["runner"] = runner.stop()
    stopped["server"] = server.stop()
    return stopped


# -- steps ------------------------------------------------------------------------------------


def register_blocks() -> list[str]:
    """Register provenflow's block types (idempotent), so the Blocks catalog lists them."""
    from provenflow.blocks.drift import DriftPolicy
    from provenflow.blocks.kubernetes import KubernetesTarget
    from provenflow.blocks.ledger import LedgerDatabase
    from provenflow.blocks.performance import PerformancePolicy
    from provenflow.blocks.registry import ContainerRegistry
    from provenflow.blocks.store import ArtifactStore
    from provenflow.blocks.vsphere import VSphereWorkerPool

    types = [
        ArtifactStore,
        LedgerDatabase,
        KubernetesTarget,
        ContainerRegistry,
        DriftPolicy,
        VSphereWorkerPool,
        PerformancePolicy,
    ]
    for block in types:
        block.register_type_and_schema()
    return [block.get_block_type_slug() for block in types]


def create_pools() -> list[dict]:
    from prefect.client.orchestration import get_client

    from provenflow.deploy.flows_image import last_reference
    from provenflow.workers.pools import default_pools, ensure_pools
    from provenflow.workspace import Workspace

    with get_client(sync_client=True) as client:
        return ensure_pools(client, default_pools(image=last_reference(Workspace.default())))


def _project() -> Path:
    from provenflow.project import project_root

    return project_root()


def _deploy_file() -> Path:
    """The project's prefect.yaml once it holds provenflow's deployments (`provenflow init`), else
    the one provenflow ships."""
    from provenflow.platform.prefect_project import deploy_file

    return deploy_file(_project())


def deploy_all(api: str) -> None:
    """`prefect --no-prompt deploy --all` of the deploy file, from the project folder (where the
    flow runs then work) and without network."""
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = get_settings().ensure_home() / "deploy.log"
    file = _deploy_file()
    with open(log, "wb") as out:
        result = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all", "--prefect-file", str(file)],
            cwd=_project(), env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise ConfigError(f"deploying {file} failed: {' '.join(tail)} (see {log})")


def check_pools_exist() -> None:
    """One line naming the work pools prefect.yaml's deployments use that the server lacks, and how to
    make one, before `prefect deploy` spends ~40 s importing every flow to say "create a work pool in
    the Prefect UI" (a team's own pool: `up` creates provenflow's pools, not theirs)."""
    import yaml
    from prefect.client.orchestration import get_client

    used: dict[str, list[str]] = {}
    for d in yaml.safe_load(_deploy_file().read_text()).get("deployments") or []:
        pool = (d.get("work_pool") or {}).get("name")
        if pool:
            used.setdefault(pool, []).append(d["name"])
    with get_client(sync_client=True) as client:
        have = {p.name for p in client.read_work_pools()}
    missing = sorted(set(used) - have)
    if missing:
        named = "; ".join(f"{pool} (deployments {', '.join(used[pool])})" for pool in missing)
        first = missing[0]
        raise ConfigError(
            f"{_deploy_file()} uses work pools the Prefect server does not have: {named}. Create a process pool "
            f"(flows run on this machine) with `provenflow pools create --process {first} --skip vsphere --skip "
            "kubernetes`, or another kind in the Prefect UI; then `provenflow up` again"
        )


def _wanted() -> list[str]:
    import yaml

    return [d["name"] for d in yaml.safe_load(_deploy_file().read_text())["deployments"]]


def _fingerprint() -> str:
    """Of what a deployment is made of: the deploy file and the flows' signatures (their files):
    provenflow's, and the project's own that the file names by path."""
    import hashlib

    import yaml

    import provenflow.flows

    file = _deploy_file()
    own = {
        _project() / str(d["entrypoint"]).rsplit(":", 1)[0]
        for d in yaml.safe_load(file.read_text())["deployments"]
        if ".py:" in str(d.get("entrypoint"))
    }
    ours = [path for folder in provenflow.flows.__path__ for path in Path(folder).glob("*.py")]
    digest = hashlib.sha256()
    for path in [file, *sorted(ours), *sorted(own)]:
        if path.is_file():
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def deployments_and_automations() -> tuple[list[str], list[str]]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployments = [d.name for d in client.read_deployments()]
        automations = [a.name for a in client.read_automations()]
    return sorted(deployments), sorted(automations)


def online_workers(pool: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import WorkerStatus

    with get_client(sync_client=True) as client:
        workers = client.read_workers_for_work_pool(pool)
    return [w.name for w in workers if w.status == WorkerStatus.ONLINE]


# -- background processes ---------------------------------------------------------------------


def _files(name: str) -> tuple[Path, Path]:
    home = get_settings().ensure_home()
    return home / f"{name}.pid", home / f"{name}.log"


def _pid(name: str) -> int | None:
    pid_file, _ = _files(name)
    return live_pid(pid_file, lambda cmdline: pid_file.with_suffix(".cmd").read_bytes() == cmdline)


def start_background(proc: Background, api: str, timeout: float = 60.0) -> int:
    """Start ``proc`` unless it runs; wait until it is ready; its pid."""
    if (pid := _pid(proc.name)) is not None:
        return pid
    pid_file, log = _files(proc.name)
    s = get_settings()
    # The flow runs it starts work in this project (ledger, store) whatever their working folder.
    env = {**os.environ, "PREFECT_API_URL": api, "PROVENFLOW_HOME": str(s.home_dir), **proc.env}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            proc.argv, cwd=s.home_dir.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    pid_file.write_text(str(process.pid))
    time.sleep(0.05)
    with contextlib.suppress(OSError):
        pid_file.with_suffix(".cmd").write_bytes(Path(f"/proc/{process.pid}/cmdline").read_bytes())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"the {proc.name} exited with status {process.returncode}; see {log}")
        if proc.ready is None or proc.ready(api):
            return process.pid
        time.sleep(0.5)
    raise ConfigError(f"the {proc.name} was not ready within {timeout:.0f} s; see {log}")


def stop_background(name: str, timeout: float = 20.0) -> bool:
    pid = _pid(name)
    pid_file, _ = _files(name)
    if pid is not None:
        terminate(pid, lambda: _pid(name) is not None, timeout, group=True)
    pid_file.unlink(missing_ok=True)
    pid_file.with_suffix(".cmd").unlink(missing_ok=True)
    return pid is not None


def note_pool_worker(pool: str) -> None:
    """Remember this process as a worker of POOL that `provenflow pools worker` runs in the
    foreground, so `provenflow down` stops it too (it left a team's pool worker running). The pid
    stays this process's through the exec into Prefect's worker."""
    folder = get_settings().ensure_home() / "pool-workers"
    folder.mkdir(exist_ok=True)
    (folder / f"{os.getpid()}.pid").write_text(str(os.getpid()))


def stop_pool_workers(timeout: float = 20.0) -> list[int]:
    """Stop the workers `provenflow pools worker` runs for this project; their pids."""
    folder = get_settings().ensure_home() / "pool-workers"
    stopped = []
    for pid_file in sorted(folder.glob("*.pid")) if folder.is_dir() else []:
        owns = lambda cmdline: b"provenflow.platform.worker" in cmdline  # noqa: E731
        if (pid := live_pid(pid_file, owns)) is not None:
            terminate(pid, lambda p=pid_file, o=owns: live_pid(p, o) is not None, timeout)
            stopped.append(pid)
        pid_file.unlink(missing_ok=True)
    return stopped


def stop_model_servers() -> list[int]:
    """Stop every model server `deploy --target local` started in this project; their pids."""
    from provenflow.deploy import local

    root = local.servers_folder()
    if not root.is_dir():
        return []
    return [pid for folder in sorted(root.iterdir()) if (pid := local.stop(folder)) is not None]
