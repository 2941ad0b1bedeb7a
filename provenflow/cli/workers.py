"""`provenflow workers …` (worker VMs on vSphere) and `provenflow pools …` (Prefect work pools).

Registered in provenflow/cli/main.py; Prefect, pyvmomi and the blocks are imported inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from provenflow.cli import output as out

workers_app = typer.Typer(
    help="Prefect worker VMs on vSphere (a VSphereWorkerPool block).", no_args_is_help=True
)
pools_app = typer.Typer(
    help="provenflow's Prefect work pools: process, vSphere and Kubernetes.", no_args_is_help=True
)


@pools_app.callback()
def pools() -> None:
    """provenflow's Prefect work pools: process, vSphere and Kubernetes."""


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
PoolBlock = Annotated[
    str, typer.Argument(help="Name of a VSphereWorkerPool block (provenflow-vsphere-worker-pool).")
]


def _prefect_ready() -> None:
    from provenflow.platform import server

    notice = server.connect(quiet=True)
    if notice:
        out.err_console.print(f"[yellow]Note:[/yellow] {notice}", highlight=False)


def _load_config(block_name: str):
    from prefect.exceptions import ObjectNotFound

    from provenflow.blocks.vsphere import VSphereWorkerPool
    from provenflow.errors import ConfigError

    try:
        return VSphereWorkerPool.load(block_name).config()
    except (ValueError, ObjectNotFound) as error:
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(
            f"no VSphereWorkerPool block named {block_name!r} ({type(error).__name__}); create one in the Prefect "
            "UI (Blocks → provenflow vSphere Worker Pool) or with VSphereWorkerPool(...).save(NAME)"
        ) from None


def _worker_rows(workers: list[dict]) -> list[list]:
    return [[w["name"], w["state"], w["power_state"], w["ip"], w["cpus"], w["memory_mb"]] for w in workers]


@workers_app.command("scale")
def scale(
    pool_block: PoolBlock,
    count: Annotated[
        int | None,
        typer.Option("--count", "-n", min=0, help="Number of worker VMs wanted (default: the block's)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Clone or retire worker VMs until COUNT run (the provision-workers flow); idempotent."""
    _prefect_ready()
    from provenflow.flows.provision_workers import provision_workers

    with out.err_console.status(f"scaling {pool_block} to {count if count is not None else 'its count'}…"):
        result = provision_workers(pool_block=pool_block, count=count)
    if as_json:
        out.print_json(result)
        return
    out.table(f"work pool {result['work_pool']}", ["name", "state", "power", "ip", "cpus", "memory MB"],
              _worker_rows(result["workers"]))  # fmt: skip
    done = [f"{label} {', '.join(result[key])}" for key, label in
            [("created", "created"), ("retired", "retired"), ("cleaned_up", "cleaned up"), ("powered_on", "powered on")]
            if result[key]]  # fmt: skip
    out.err_console.print(
        f"{result['before']} → {len(result['workers'])} workers in {result['seconds']:.1f} s: "
        + ("; ".join(done) if done else "nothing to change"),
        highlight=False,
    )


@workers_app.command("list")
def list_(pool_block: PoolBlock, as_json: JsonOpt = False) -> None:
    """The pool's worker VMs, oldest first, with power state and IP address."""
    _prefect_ready()
    config = _load_config(pool_block)
    from provenflow.workers import connect, list_workers

    with connect(config) as session:
        workers = [w.as_dict() for w in list_workers(session)]
    if as_json:
        out.print_json({"work_pool": config.work_pool, "workers": workers})
        return
    out.table(f"work pool {config.work_pool}", ["name", "state", "power", "ip", "cpus", "memory MB"],
              _worker_rows(workers))  # fmt: skip


@pools_app.command("create")
def create(
    process: Annotated[
        str, typer.Option(help="Name of the process pool (flows on this machine).")
    ] = "provenflow-process",
    vsphere: Annotated[
        str, typer.Option(help="Name of the vSphere pool (process workers on VMs).")
    ] = "provenflow-vsphere",
    kubernetes: Annotated[str, typer.Option(help="Name of the Kubernetes pool.")] = "provenflow-kubernetes",
    image: Annotated[
        str | None,
        typer.Option(
            help="Default image of Kubernetes flow runs, by digest (default: the last one `provenflow release "
            "--flows` recorded in the ledger)."
        ),
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="Default namespace of Kubernetes flow runs.")] = None,
    template: Annotated[
        str | None,
        typer.Option(
            help="Kubernetes base job template (default deployments/kubernetes-base-job-template.json)."
        ),
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", help="Leave out a pool: process, vsphere or kubernetes (repeatable)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the process, vSphere and Kubernetes work pools, or update their templates; idempotent."""
    from pathlib import Path

    from provenflow.workers.errors import PoolError
    from provenflow.workers.pools import KUBERNETES_TEMPLATE, default_pools

    skipped = set(skip or [])
    if unknown := skipped - {"process", "vsphere", "kubernetes"}:
        raise PoolError(f"--skip {', '.join(sorted(unknown))}: expected process, vsphere or kubernetes")
    _prefect_ready()
    from prefect.client.orchestration import get_client

    if image is None and "kubernetes" not in skipped:
        from provenflow.deploy.flows_image import last_reference
        from provenflow.workspace import Workspace

        if image := last_reference(Workspace.default()):
            out.err_console.print(f"Kubernetes flow runs use the last flows image, {image}", highlight=False)
    specs = default_pools(
        process=None if "process" in skipped else process,
        vsphere=None if "vsphere" in skipped else vsphere,
        kubernetes=None if "kubernetes" in skipped else kubernetes,
        kubernetes_template=Path(template) if template else KUBERNETES_TEMPLATE,
        image=image,
        namespace=namespace,
    )
    from provenflow.workers.pools import ensure_pools

    with get_client(sync_client=True) as client:
        results = ensure_pools(client, specs)
    if as_json:
        out.print_json(results)
        return
    out.table(
        "work pools", ["name", "type", "action"], [[r["name"], r["type"], r["action"]] for r in results]
    )


@pools_app.command("worker")
def worker(
    pool: Annotated[str, typer.Argument(help="The process work pool to poll.")] = "provenflow-process",
    limit: Annotated[
        int | None, typer.Option("--limit", "-l", min=1, help="Most flow runs at once (default: no limit).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="The worker's name in Prefect.")] = None,
) -> None:
    """Run a process worker for POOL here (Prefect's, as `prefect worker start --pool POOL`), whose flow
    runs fork from this project's warm runner with Prefect, pandas and scikit-learn imported, instead of
    a new interpreter per deployment run, schedule or retrain. Starts the runner when it is not up."""
    import os
    import sys

    from provenflow.platform import runner, server

    notice = server.connect(
        quiet=False
    )  # this project's server, unless PREFECT_API_URL or a profile says otherwise
    if notice:
        out.err_console.print(f"[yellow]Note:[/yellow] {notice}", highlight=False)
    # The flow runs work in this project (ledger, store) whatever their working folder, as `up`'s worker's do.
    os.environ["PROVENFLOW_HOME"] = str(runner.home())
    runner.start()  # imports in the background; runs start as new interpreters until it listens
    argv = [sys.executable, "-m", "provenflow.platform.worker", "--pool", pool]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if name is not None:
        argv += ["--name", name]
    from provenflow.platform.stack import note_pool_worker

    note_pool_worker(pool)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # the worker is this process: Ctrl-C and kill reach Prefect's worker
