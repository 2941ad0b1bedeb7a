"""Watching a served model: `provenflow drift-check`, `quality-check`, `feedback`, `shadow-report` and
`performance`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provenflow.cli import output as out
from provenflow.cli.root import JsonOpt, default_workspace, parse_since, prefect_ready

commands = typer.Typer()  # registered on the root app by provenflow.cli.main, in its order


@commands.command("drift-check")
def drift_check(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME@VERSION.")],
    since: Annotated[
        str | None, typer.Option(help="Start of the window (ISO time); default: the policy's window.")
    ] = None,
    policy_block: Annotated[str | None, typer.Option(help="A provenflow-drift-policy block.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare a model's logged predictions with its training profile (the drift-monitor flow)."""

    start = parse_since(since)
    prefect_ready()
    from provenflow.flows.drift_monitor import drift_monitor as flow

    with out.err_console.status(f"checking {model} for drift…"):
        result = flow(model=model, since=start, policy_block=policy_block)
    if as_json:
        return out.print_json(result)
    out.drift(result)


@commands.command("quality-check")
def quality_check(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME@VERSION.")],
    policy_block: Annotated[
        str | None,
        typer.Option(help="A provenflow-performance-policy block (default: accuracy, drop 0.05, 200 rows)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Realized performance from the labels that arrived, against training (the quality-monitor flow)."""
    prefect_ready()
    from provenflow.flows.quality_monitor import quality_monitor as flow

    with out.err_console.status(f"checking {model}'s realized performance…"):
        result = flow(model=model, policy_block=policy_block)
    if as_json:
        return out.print_json(result)
    out.quality(result)


@commands.command()
def feedback(
    model: Annotated[
        str, typer.Argument(help="NAME@VERSION or NAME@ALIAS whose served rows the labels are for.")
    ],
    source: Annotated[Path, typer.Option("--source", help="CSV or Parquet file: a label per served row.")],
    label_column: Annotated[str, typer.Option(help="Column holding the true label.")] = "label",
    id_column: Annotated[str, typer.Option(help="Column holding row ids '<request_id>:<row>'.")] = "id",
    request_id_column: Annotated[
        str, typer.Option(help="Column holding request ids (with --row-column, instead of row ids).")
    ] = "request_id",
    row_column: Annotated[
        str, typer.Option(help="Column holding the row number within its request.")
    ] = "row",
    as_json: JsonOpt = False,
) -> None:
    """Store ground-truth labels for served predictions (append-only; the latest label for a row wins)."""
    from rich.progress import Progress

    from provenflow.monitoring.labels import Columns, record_feedback

    columns = Columns(label=label_column, id=id_column, request_id=request_id_column, row=row_column)
    with Progress(console=out.err_console, transient=True, disable=not out.err_console.is_terminal) as bar:
        task = bar.add_task(f"reading {source.name}", total=None)

        def advance(step: str, done: int, total: int) -> None:
            bar.update(task, description=f"checking ids: {step}", completed=done, total=total)

        result = record_feedback(default_workspace(), model, source, columns, source="cli", progress=advance)
    if as_json:
        return out.print_json(result.to_dict())
    out.console.print(f"stored {result.stored} labels for {result.model}", highlight=False)
    if result.unknown:
        shown = ", ".join(result.unknown_ids)
        more = " …" if result.unknown > len(result.unknown_ids) else ""
        out.err_console.print(
            f"[yellow]{result.unknown} ids have no logged prediction[/yellow] (stored anyway; check them): "
            f"{shown}{more}",
            highlight=False,
        )


@commands.command("shadow-report")
def shadow_report(
    production: Annotated[str, typer.Argument(help="The production model, NAME@ALIAS or NAME@VERSION.")],
    challenger: Annotated[
        str | None,
        typer.Argument(help="Its shadow challenger; default: the one its deployment mirrors to."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Start of the window (ISO time); default: all.")] = None,
    window: Annotated[int, typer.Option(help="Minutes per row of the report.", min=1)] = 60,
    as_json: JsonOpt = False,
) -> None:
    """How often a shadow challenger agrees with production, from their two prediction logs."""
    from datetime import timedelta

    from provenflow.errors import ConfigError
    from provenflow.monitoring.shadow import current_shadow, shadow_agreement

    start = parse_since(since)
    workspace = default_workspace()
    challenger = challenger or current_shadow(workspace, production)
    if challenger is None:
        raise ConfigError(
            f"no deployment of {production} mirrors to a shadow; name the challenger "
            f"(provenflow shadow-report {production} NAME@VERSION) or deploy one with --shadow-of {production}"
        )
    report = shadow_agreement(
        workspace, production, challenger, since=start, window=timedelta(minutes=window)
    )
    if as_json:
        return out.print_json(report)
    spread = "mean_abs_proba_difference" if "mean_abs_proba_difference" in report else "mean_abs_difference"
    out.table(
        f"{report['production']} vs shadow {report['challenger']}",
        ["window start", "rows", "agreement", spread.replace("_", " ")],
        [[w["start"][:16], w["matched"], w["agreement"], w.get(spread)] for w in report["windows"]],
    )
    coverage = "n/a" if report["coverage"] is None else f"{report['coverage']:.1%}"
    out.err_console.print(
        f"{report['matched']} of {report['production_rows']} production rows answered by both ({coverage}); "
        f"agreement {out.fmt(report['agreement'])}"
        + (
            f"; {report['ambiguous_rows']} rows with reused request ids left out"
            if report["ambiguous_rows"]
            else ""
        ),
        highlight=False,
    )
    out.warnings(
        [{"level": "warning", "message": f"unreadable segment {s}"} for s in report["skipped_segments"]]
    )


@commands.command()
def performance(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME@VERSION.")],
    since: Annotated[
        str | None, typer.Option(help="Start of the window (ISO time); default: the last 24 hours.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """A classifier's performance on its logged predictions, estimated before labels arrive (CBPE)."""
    from datetime import UTC, datetime, timedelta

    from provenflow.monitoring.estimation import estimated_performance

    until = datetime.now(UTC)
    start = parse_since(since) or until - timedelta(days=1)
    result = estimated_performance(default_workspace(), model, since=start, until=until)
    if as_json:
        return out.print_json(result)
    out.performance(result)
