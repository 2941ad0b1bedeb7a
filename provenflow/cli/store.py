"""Keeping the store sound: `provenflow gc` and `verify`."""

from __future__ import annotations

from typing import Annotated

import typer

from provenflow.cli import output as out
from provenflow.cli.root import (
    JsonOpt,
    default_workspace,
    prefect_connect_quietly,
)

commands = typer.Typer()  # registered on the root app by provenflow.cli.main, in its order


@commands.command()
def gc(
    grace: Annotated[
        str, typer.Option(help="Only what is older than this (0, 90s, 30m, 1h, 2d): runs in flight are safe.")
    ] = "1h",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would be removed; remove nothing.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Mark runs whose process died as crashed (ledger and Prefect); remove unfinished writes and
    store objects no ledger row refers to, older than the grace period."""
    from provenflow.storage import gc as store_gc
    from provenflow.tracking import crashes

    try:
        grace_seconds = store_gc.parse_duration(grace)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    workspace = default_workspace()
    crashed, note = [], None
    if not dry_run:
        crashed, note = crashes.settle(workspace.ledger, prefect=prefect_connect_quietly() is None)
    else:  # what a real gc would mark (this host's dead processes), marking nothing
        crashed = crashes.find_crashed(workspace.ledger)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    # Off when stderr is not a terminal: a transient bar there leaves a blank line first.
    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), console=out.err_console,
                  transient=True, disable=as_json or not out.err_console.is_terminal) as bar:  # fmt: skip
        task = bar.add_task("listing the store", total=None)
        report = store_gc.collect(
            workspace, grace_seconds, dry_run=dry_run,
            progress=lambda done, total: bar.update(task, description="removing", completed=done, total=total),
        )  # fmt: skip
    data = report.as_dict() | {"crashed_runs": [c.as_dict() for c in crashed]}
    if note:
        out.err_console.print(f"[yellow]Note:[/yellow] {note}", highlight=False)
    if as_json:
        return out.print_json(data)
    out.gc_report(data, data["crashed_runs"])


@commands.command()
def verify(as_json: JsonOpt = False) -> None:
    """Hash every object the ledger refers to; list missing or corrupt ones and what uses them (exit 1 if any)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from provenflow.storage.references import referenced_hashes
    from provenflow.storage.verify import object_size, verify_store

    workspace = default_workspace()
    with workspace.ledger.reader() as session:
        hashes = referenced_hashes(session)
    total = sum(object_size(workspace.store, h) for h in hashes)
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    quiet = as_json or not out.err_console.is_terminal  # a transient bar off a terminal leaves a blank line
    with Progress(*columns, console=out.err_console, transient=True, disable=quiet) as bar:
        task = bar.add_task("verifying objects", total=total)
        report = verify_store(workspace, lambda _h, size: bar.advance(task, size), hashes=hashes)
    if as_json:
        out.print_json(report.as_dict())
    else:
        out.verify_report(report.as_dict())
    if report.damaged:
        raise typer.Exit(1)
