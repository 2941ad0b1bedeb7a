"""The project's services: `provenflow server …`, `up`, `down`, `init` and `demo`."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from provenflow.cli import output as out
from provenflow.cli.root import JsonOpt

server_app = typer.Typer(
    help="The project's local Prefect server (127.0.0.1, port 4200 by default).", no_args_is_help=True
)

commands = typer.Typer()  # registered on the root app by provenflow.cli.main, in its order


def _interruptible() -> None:
    """Let SIGINT stop this command even when it was started with SIGINT ignored."""
    # A shell without job control starts `cmd &` with SIGINT ignored, and Python then keeps it ignored:
    # a test suite run that way sent `demo` a Ctrl-C it never saw, and the demo went on to deploy. `up`
    # and `demo` start services for minutes; a SIGINT sent to them has to stop them however they began.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@server_app.command("start")
def server_start(as_json: JsonOpt = False) -> None:
    """Start the project's Prefect server in the background (state in .provenflow/prefect)."""
    from provenflow.platform import runner, server

    with out.err_console.status("starting the Prefect server…"):
        status = server.start()
    warm = runner.start()  # takes its imports in the background; flow commands use it once it listens
    if as_json:
        return out.print_json(status.as_dict() | {"runner": warm.as_dict()})
    out.console.print(
        f"Prefect server running: UI {status.ui_url}  (pid {status.pid}, log {status.log}); "
        f"warm runner pid {warm.pid} (log {warm.log})",
        highlight=False,
    )


@server_app.command("stop")
def server_stop(as_json: JsonOpt = False) -> None:
    """Stop the Prefect server this project started."""
    from provenflow.platform import runner, server

    runner.stop()
    stopped = server.stop()
    if as_json:
        return out.print_json({"stopped": stopped})
    out.console.print(
        "Prefect server stopped." if stopped else "No Prefect server of this project was running."
    )


@server_app.command("status")
def server_status(as_json: JsonOpt = False) -> None:
    """Whether the project's Prefect server answers (exit status 0), or not (3)."""
    from provenflow.platform import server

    status = server.status()
    if as_json:
        out.print_json(status.as_dict())
    else:
        out.console.print(
            f"{'running' if status.running else 'not running'}: {status.ui_url}"
            + (f" (pid {status.pid})" if status.pid else ""),
            highlight=False,
        )
    if not status.running:
        raise typer.Exit(3)


@commands.command()
def up(
    auth: Annotated[
        bool,
        typer.Option(
            "--auth",
            help="Require an auth string on the Prefect API and UI (kept in .provenflow/prefect-auth, "
            "0600; the worker and this project's CLI send it).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start everything the Prefect UI needs (idempotent): the project's server, provenflow's block
    types, the work pools, every deployment of prefect.yaml (schedules, triggers) and a process worker."""
    from provenflow.platform import stack

    _interruptible()
    with out.err_console.status("starting") as spinner:
        report = stack.up(lambda msg: spinner.update(msg + "…"), auth=auth)
    if as_json:
        return out.print_json(report.as_dict())
    out.console.print(
        f"Prefect UI {report.ui_url}: {len(report.deployments)} deployments, "
        f"{len(report.automations)} automations, {len(report.blocks)} block types, "
        f"{len(report.pools)} work pools; running: "
        + ", ".join(f"{name} (pid {pid})" for name, pid in report.processes.items())
        + "\nStop everything with: provenflow down",
        highlight=False,
    )
    if not report.authenticated:
        out.err_console.print(
            f"[yellow]Note:[/yellow] the Prefect API at {report.ui_url} has no authentication: anyone who "
            "reaches its port can read Secret blocks. For a shared machine: provenflow down; provenflow up --auth "
            "(see SECURITY.md)",
            highlight=False,
        )


@commands.command()
def init(as_json: JsonOpt = False) -> None:
    """Add provenflow's deployments (and their work pools) to this Prefect project's prefect.yaml,
    created if absent; the project's own entries stay as they are. Safe to run again."""
    from provenflow.platform.prefect_project import init as add_deployments
    from provenflow.settings import get_settings

    report = add_deployments(Path.cwd())
    get_settings().ensure_home()  # .provenflow/ (git-ignored): the ledger, the store, the server
    if as_json:
        return out.print_json(report.as_dict())
    what = "created" if report.created else "updated" if report.added else "unchanged"
    out.console.print(
        f"prefect.yaml {what}: {len(report.added)} provenflow deployments added, "
        f"{len(report.kept)} already there.\n"
        "Next: provenflow up (a server, work pools, all of prefect.yaml, a worker)\n"
        "or, on your own server: provenflow pools create; prefect deploy --all",
        highlight=False,
    )


@commands.command()
def down(as_json: JsonOpt = False) -> None:
    """Stop what `up` started and the model servers `deploy --target local` started: worker, server."""
    from provenflow.platform import stack

    stopped = stack.down()
    if as_json:
        return out.print_json(stopped)
    what = [f"{k} {v}" if isinstance(v, list) else k for k, v in stopped.items() if v]
    out.console.print(
        "Stopped: " + ", ".join(what) if what else "Nothing of this project was running.", highlight=False
    )


@commands.command()
def demo() -> None:
    """The end-to-end demo: penguins data run, three model runs, lineage and comparison."""
    from provenflow.demo.run import main as run_demo

    _interruptible()
    run_demo()
