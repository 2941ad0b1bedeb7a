"""The root of the command line: the ``provenflow`` app, its global options, and what every command group
shares (the workspace, connecting to Prefect, time and column options). Each group registers its commands
on ``app`` in its own module; ``provenflow.cli.main`` imports them in order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from provenflow.cli import output as out

if TYPE_CHECKING:
    from datetime import datetime

    from provenflow.workspace import Workspace

app = typer.Typer(
    help="provenflow: tracked data and model runs on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # --debug tracebacks: a local may hold a credential (older typers showed them)
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
state = {"debug": False, "verbose": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's flow and task logs.")
    ] = False,
) -> None:
    state.update(debug=debug, verbose=verbose)


def prefect_ready() -> None:
    from provenflow.errors import ConfigError
    from provenflow.platform import server

    problem = server.unreachable()
    if problem:
        raise ConfigError(problem)
    notice = server.connect(quiet=not state["verbose"])
    if notice:
        out.err_console.print(f"[yellow]Note:[/yellow] {notice}", highlight=False)


def default_workspace() -> Workspace:
    from provenflow.workspace import Workspace

    return Workspace.default()


def settle_crashed(workspace) -> None:
    """Show a run whose process died here as crashed, not running: mark it so (one indexed query),
    and end its Prefect flow run too when a Prefect server answers (Prefect is imported only then)."""
    from provenflow.tracking import crashes

    crashed, _ = crashes.settle(workspace.ledger, prefect=False)
    if crashed and prefect_connect_quietly() is None:
        _, note = crashes.settle_in_prefect(crashed)
        if note:
            out.err_console.print(f"[yellow]Note:[/yellow] {note}", highlight=False)


def prefect_connect_quietly() -> str | None:
    """Point at the Prefect API if one answers; the notice when none does."""
    from provenflow.platform import server

    return server.connect(quiet=True)


def split_columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def parse_since(since: str | None) -> datetime | None:
    """--since as an aware time (UTC when it names no zone); None when not given."""
    from datetime import UTC, datetime

    if not since:
        return None
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise typer.BadParameter(f"--since {since!r} is not an ISO time such as 2026-11-29T10:00") from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)
