"""`provenflow data-run`, `model-run`, `sweep` and `reproduce`: the commands that run the recording flows."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from provenflow.cli import output as out
from provenflow.cli.root import JsonOpt, prefect_ready, split_columns

commands = typer.Typer()  # registered on the root app by provenflow.cli.main, in its order


@commands.command("data-run")
def data_run(
    name: Annotated[str, typer.Option(help="Dataset name.")],
    source: Annotated[
        str,
        typer.Option(
            help="CSV, JSON Lines, JSON or Parquet file, or a folder, glob or prefix of them: a path or "
            "fsspec URL; with --query or --table, a SQLAlchemy URL (postgresql://user@host/db)."
        ),
    ],
    suite: Annotated[
        str | None,
        typer.Option(
            help="Great Expectations suite JSON (default: expectations/NAME.json if present, else the "
            "suite NAME's last data run kept to, else one generated from this data; 'new': generate one "
            "from this data even so)."
        ),
    ] = None,
    source_credentials: Annotated[
        str | None, typer.Option(help="A Prefect Secret block holding user:password for the source.")
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="A SELECT to read from the SQL database at --source.")
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="A table (or schema.table) to read whole from the SQL database at --source."),
    ] = None,
    reread: Annotated[
        bool,
        typer.Option(help="Read every file of a folder, even those unchanged in size, time and inode."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate and version a dataset (the data-run flow).

    A user:password@ in a --source URL is moved into a Prefect Secret block before the flow runs;
    the flow gets the URL without it and the block's name."""
    prefect_ready()
    from provenflow.flows.data_run import data_run as flow

    source, source_credentials = _keep_credentials(name, source, source_credentials)
    with out.err_console.status(f"data run {name}: read, validate, store…"):
        result = flow(
            name=name,
            source=source,
            suite=suite,
            source_credentials=source_credentials,
            query=query,
            table=table,
            reread=reread,
        )
    if as_json:
        out.print_json(result)
        return
    ds = result["dataset"]
    out.console.print(ds["ref"], highlight=False)
    note = "new version" if ds["new"] else "unchanged content: existing version"
    if not ds["new"] and ds.get("unread_files"):  # not seen, so not claimed: say what was trusted
        note = (
            f"no change seen: existing version ({ds['unread_files']} files unchanged in size, time and "
            "inode were not read again; --reread reads them)"
        )
    if ds.get("repaired"):
        note += " (its damaged stored object was replaced)"
    out.err_console.print(
        f"{ds['rows']} rows × {ds['columns']} columns, {note}; "
        f"{result['validation']['successful']}/{result['validation']['evaluated']} expectations passed"
        + (
            f" (suite generated from this data; to change it, edit {result['validation']['suite_path']}"
            f" and commit it as expectations/{name}.json)"
            if result["validation"]["created_suite"]
            else ""
        )
        + (f"\nPrefect: {result['prefect_url']}" if result.get("prefect_url") else ""),
        highlight=False,
    )
    out.warnings(result.get("warnings") or [])


def _keep_credentials(name: str, source: str, block: str | None) -> tuple[str, str | None]:
    """SOURCE without user-info, and the Secret block with the credentials that were in it: the
    dataset's own block, written only once the source has accepted them (a refused run leaves the
    credentials that worked last in place)."""
    from provenflow.data.credentials import split_url

    url, credentials = split_url(source)
    if credentials is None:
        return source, block
    if block:
        raise typer.BadParameter(
            f"--source {url!r} has credentials in it and --source-credentials names a block: give one of them"
        )
    from rich.markup import escape

    from provenflow.blocks.credentials import keep_credentials
    from provenflow.data.credentials import FILE_PROTOCOLS, protocol_of
    from provenflow.data.datasets import check_source

    if protocol_of(url) in FILE_PROTOCOLS:  # a file: DataError (one line) when refused, no block written
        check_source(url, credentials)
    block = keep_credentials(name, credentials)
    out.err_console.print(
        f"[yellow]Note:[/yellow] the credentials in --source are kept in the Prefect Secret block "
        f"{block!r}; the run gets {escape(repr(url))} and the block's name",
        highlight=False,
    )
    return url, block


@commands.command("model-run")
def model_run(
    dataset: Annotated[str, typer.Option(help="NAME@VERSION or NAME@latest.")],
    target: Annotated[str, typer.Option(help="Column to predict.")],
    estimator: Annotated[
        str, typer.Option(help="Import path, e.g. sklearn.ensemble.RandomForestClassifier.")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Hyper-parameter key=value (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for the split and the estimator.")] = 42,
    sample: Annotated[
        int | None,
        typer.Option(
            help="Train on this many rows, drawn with --seed (0: every row; default: every row "
            "up to 1,000,000, a seeded sample of 1,000,000 above)."
        ),
    ] = None,
    test_size: Annotated[float, typer.Option(help="Fraction of rows held out for evaluation.")] = 0.25,
    name: Annotated[str | None, typer.Option(help="Model name (default DATASET-TARGET).")] = None,
    features: Annotated[
        str | None, typer.Option(help="Only these columns, comma-separated (default: every usable column).")
    ] = None,
    exclude: Annotated[str | None, typer.Option(help="Leave these columns out, comma-separated.")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option(
            "--role", help="Override a column's role: COLUMN=numeric|categorical|datetime (repeatable)."
        ),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="classification: let a classifier learn a numeric target that looks continuous."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train, evaluate and register a model version (the model-run flow).

    Columns are used by their role in the dataset version (`provenflow datasets show`): identifiers,
    free text and constant columns are left out, with a notice; dates become numeric features inside
    the model, so the served model takes the date string."""
    from provenflow.data.features import parse_roles
    from provenflow.modeling.training import parse_param

    params: dict[str, Any] = dict(parse_param(p) for p in param or [])
    roles = parse_roles(role or [])
    prefect_ready()
    from provenflow.flows.model_run import model_run as flow

    with out.err_console.status(f"model run: train {estimator.rsplit('.', 1)[-1]} on {dataset}…"):
        result = flow(
            dataset=dataset,
            target=target,
            estimator=estimator,
            params=params,
            seed=seed,
            sample=sample,
            test_size=test_size,
            name=name,
            features=split_columns(features),
            exclude=split_columns(exclude),
            roles=roles or None,
            task=task,
        )
    if as_json:
        out.print_json(result)
        return
    out.warnings(result.get("warnings") or [])
    model = result["model"]
    out.console.print(f"{model['name']}@{model['version']}", highlight=False)
    metrics = "  ".join(f"{k}={v:.4f}" for k, v in result["metrics"].items())
    out.err_console.print(
        f"trained on {result['dataset']} with {', '.join(result['features'])}: {metrics}"
        + (f"\nPrefect: {result['prefect_url']}" if result.get("prefect_url") else ""),
        highlight=False,
    )


@commands.command()
def sweep(
    dataset: Annotated[
        list[str], typer.Option("--dataset", help="NAME@VERSION or NAME@latest (repeatable).")
    ],
    target: Annotated[str, typer.Option(help="Column to predict.")],
    estimator: Annotated[
        str, typer.Option(help="Import path, e.g. sklearn.ensemble.RandomForestClassifier.")
    ],
    grid: Annotated[
        list[str], typer.Option("--grid", help="Hyper-parameter values key=v1,v2,… (repeatable).")
    ],
    random: Annotated[
        int | None, typer.Option("--random", help="Draw N combinations of the grid instead of all of them.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the estimators and the random draws.")] = 42,
    test_size: Annotated[float, typer.Option(help="Fraction of rows held out for evaluation.")] = 0.25,
    cv: Annotated[
        int | None, typer.Option("--cv", help="Also record each metric's mean and std over K folds.")
    ] = None,
    max_trials: Annotated[
        int | None,
        typer.Option("--max-trials", help="Allow a sweep of more trials than the default limit of 1,000."),
    ] = None,
    max_concurrency: Annotated[int, typer.Option(help="At most this many trials at once.")] = 2,
    runner: Annotated[str, typer.Option(help="threads or processes (without --dask).")] = "threads",
    dask: Annotated[
        str | None, typer.Option("--dask", help="Run trials on the Dask scheduler at this address.")
    ] = None,
    dask_block: Annotated[
        str | None,
        typer.Option(help="Run trials on the Dask scheduler whose address is in this String block."),
    ] = None,
    metric: Annotated[
        str | None, typer.Option(help="Rank by this metric (default f1/r2, CV mean with --cv).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default DATASET-TARGET).")] = None,
    promote_best_to: Annotated[
        str | None, typer.Option(help="Send the best trial's model through the promotion gate to this alias.")
    ] = None,
    auto_approve: Annotated[
        bool, typer.Option(help="With --promote-best-to: skip the approval in the UI.")
    ] = False,
    refit: Annotated[
        str,
        typer.Option(
            help="all: every trial's model trained and registered; best (with --cv): every trial "
            "cross-validated in parallel processes and recorded, only the best trained and registered."
        ),
    ] = "all",
    as_json: JsonOpt = False,
) -> None:
    """One tracked model run per trial (datasets × grid, or --random N draws), trials already done reused
    (the sweep flow); prints the leaderboard."""
    from provenflow.modeling.sweep import parse_grid, plan

    grid_values = parse_grid(grid)
    # A grid too large: one line before Prefect starts.
    planned = plan(dataset, grid_values, random, seed, max_trials)
    if random is not None and random > len(planned) // len(dataset):
        out.err_console.print(
            f"--random {random} asks for more than the grid's {len(planned) // len(dataset)} combinations: "
            "each runs once",
            highlight=False,
        )
    if refit not in ("all", "best"):
        raise typer.BadParameter(f"--refit is 'all' or 'best', not {refit!r}")
    prefect_ready()
    from provenflow.flows.sweep import sweep as flow

    with out.err_console.status(f"sweep: {estimator.rsplit('.', 1)[-1]} over {', '.join(dataset)}…"):
        result = flow(
            datasets=dataset, target=target, estimator=estimator, grid=grid_values, random=random, seed=seed,
            test_size=test_size, cv=cv, max_concurrency=max_concurrency, runner=runner, dask=dask,
            dask_block=dask_block, metric=metric, name=name, promote_best_to=promote_best_to,
            auto_approve=auto_approve, refit=refit, max_trials=max_trials,
        )  # fmt: skip
    if as_json:
        return out.print_json(result)
    out.warnings(result["failed"])
    key = result["metric"]
    for row in result["leaderboard"]:
        params = " ".join(f"{k}={v}" for k, v in (row["params"] or {}).items())
        out.console.print(f"{row['rank']:>3}  {row['metrics'][key]:.4f}  {row['model'] or '-'}  {row['dataset']}  {params}",
                          highlight=False)  # fmt: skip
    out.err_console.print(
        f"{result['trials']} trials ranked by {key}: {result['trained']} trained, {result['reused']} reused, "
        f"{len(result['failed'])} failed; sweep run {result['run_id']}"
        + (f"\nPrefect: {result['prefect_url']}" if result.get("prefect_url") else ""),
        highlight=False,
    )
    if result["promotion"]:
        out.promotion(result["promotion"])


@commands.command()
def reproduce(
    run_id: Annotated[
        str,
        typer.Argument(
            help="The run to reproduce: its id (or a unique prefix), or the MODEL@VERSION or DATASET@VERSION it made."
        ),
    ],
    code: Annotated[
        str, typer.Option(help="recorded: the run's commit + diff; current: the project as it is now.")
    ] = "recorded",
    as_json: JsonOpt = False,
) -> None:
    """Re-run a recorded run from its inputs and code, and prove the result identical (the reproduce flow)."""
    if code not in ("recorded", "current"):
        raise typer.BadParameter("--code is 'recorded' or 'current'")
    prefect_ready()
    from provenflow.flows.reproduce import reproduce as flow

    with out.err_console.status(f"reproducing run {run_id}…"):
        result = flow(run_id=run_id, code=code)
    if as_json:
        return out.print_json(result)
    out.reproduction(result)
