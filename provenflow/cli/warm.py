"""What the warm runner (``provenflow.platform.runner``) asks of the command line it forks: warm the
caches every first command would fill, and give a forked run consoles of its own caller's terminal."""

from __future__ import annotations


def warm_up() -> None:
    """Do once what every first query and table pays (SQLAlchemy configures its mappers and
    compiles statements, rich fills its caches: ~0.1-0.2 s measured), on a throwaway in-memory
    ledger and console: no thread, file or connection is left behind."""
    import io

    from rich.console import Console
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session, configure_mappers

    from provenflow.cli import output
    from provenflow.ledger import models
    from provenflow.tracking import catalog

    configure_mappers()
    engine = create_engine("sqlite://")
    models.Base.metadata.create_all(engine)
    with Session(engine) as session:
        catalog.list_runs(session)
        catalog.list_datasets(session)
        catalog.list_models(session)
    engine.dispose()
    console, output.console = output.console, Console(file=io.StringIO(), width=100)
    try:
        output.table("warm-up", ["a", "b"], [["x" * 30, 1.5], ["y", None]])
    finally:
        output.console = console


def fresh_consoles() -> None:
    # rich decides colours and terminal features when a Console is made: make them for the
    # caller's terminal, not the runner's log file.
    from rich.console import Console

    from provenflow.cli import output

    output.console = Console()
    output.err_console = Console(stderr=True, soft_wrap=True)
