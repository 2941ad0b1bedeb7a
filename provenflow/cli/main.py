"""The provenflow command line. Heavy libraries (Prefect, scikit-learn, Great Expectations) are
imported inside the commands that use them, so ``provenflow --help`` answers at once."""

# ruff: noqa: E402
from __future__ import annotations

import os
import sys


def _forward_early() -> bool:
    """When the ``provenflow`` script imports this module to call run(), hand a command the warm
    runner serves over now, before typer and rich are imported (~0.1 s of a 0.3 s answer); exits
    with the command's status when the runner ran it. Whether the runner was asked."""
    script = getattr(sys.modules.get("__main__"), "__file__", None) or ""
    if os.path.basename(script) != "provenflow":
        return False
    from provenflow.platform import runner

    code = runner.submit(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    return True


_runner_asked = _forward_early()  # the imports below come after it on purpose (ruff: E402 off)

import typer

from provenflow.cli import catalog, lifecycle, monitoring, runs, stack, store
from provenflow.cli import output as out
from provenflow.cli.root import app, state
from provenflow.cli.warm import fresh_consoles, warm_up  # noqa: F401 - the warm runner calls them
from provenflow.cli.workers import pools_app, workers_app
from provenflow.errors import ProvenflowError

# The order of `provenflow --help`: running, shipping, watching, reading, upkeep, services.
for group in (runs, lifecycle, monitoring, catalog, store, stack):
    app.registered_commands.extend(group.commands.registered_commands)
app.add_typer(catalog.runs_app, name="runs")
app.add_typer(catalog.datasets_app, name="datasets")
app.add_typer(catalog.models_app, name="models")
app.add_typer(stack.server_app, name="server")
app.add_typer(workers_app, name="workers")
app.add_typer(pools_app, name="pools")


def run() -> None:
    """Entry point: turn provenflow's errors into `Error: …` and exit status 1."""
    from provenflow.platform import runner

    # A flow command forked from the warm runner, when it is up (unless asked at import already).
    code = None if _runner_asked else runner.submit(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    try:
        result = app(standalone_mode=False)
        if isinstance(result, int):  # click hands back typer.Exit's code in this mode
            sys.exit(result)
    except ProvenflowError as exc:
        if state["debug"]:
            raise
        from rich.markup import escape

        from provenflow.redact import redact

        # Every message through the one masking function: no message may print a credential.
        message = escape(redact(str(exc)))
        out.err_console.print(f"[red]Error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        out.err_console.print("Aborted.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Usage errors: typer bundles its own click, so match the shape rather than the class.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            from provenflow.redact import redact

            if isinstance(getattr(exc, "message", None), str):  # the value given may hold a URL's password
                exc.message = redact(exc.message)
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    run()
