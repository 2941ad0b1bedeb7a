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

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from provenflow.cli import output as out
from provenflow.cli.workers import pools_app, workers_app
from provenflow.errors import ProvenflowError

if TYPE_CHECKING:
    from datetime import datetime

app = typer.Typer(
    help="provenflow: tracked data and model runs on Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # --debug tracebacks: a local may hold a credential (older typers showed them)
)
runs_app = typer.Typer(help="Recorded runs.", no_args_is_help=True)
datasets_app = typer.Typer(help="Dataset versions.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions.", no_args_is_help=True)
server_app = typer.Typer(
    help="The project's local Prefect server (127.0.0.1, port 4200 by default).", no_args_is_help=True
)
app.add_typer(runs_app, name="runs")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(server_app, name="server")
app.add_typer(workers_app, name="workers")
app.add_typer(pools_app, name="pools")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_state = {"debug": False, "verbose": False}


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's flow and task logs.")
    ] = False,
) -> None:
    _state.update(debug=debug, verbose=verbose)


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
        if _state["debug"]:
            raise
        out.err_console.print(f"[red]Error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        out.err_console.print("Aborted.")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # Usage errors: typer bundles its own click, so match the shape rather than the class.
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            sys.exit(exc.exit_code)
        raise


def _prefect_ready() -> None:
    from provenflow.platform import server

    notice = server.connect(quiet=not _state["verbose"])
    if notice:
        out.err_console.print(f"[yellow]Note:[/yellow] {notice}", highlight=False)


def _workspace():
    from provenflow.workspace import Workspace

    return Workspace.default()


def _settle_crashed(workspace) -> None:
    """Show a run whose process died here as crashed, not running: mark it so (one indexed query),
    and end its Prefect flow run too when a Prefect server answers (Prefect is imported only then)."""
    from provenflow.tracking import crashes

    crashed, _ = crashes.settle(workspace.ledger, prefect=False)
    if crashed and _prefect_connect_quietly() is None:
        _, note = crashes.settle_in_prefect(crashed)
        if note:
            out.err_console.print(f"[yellow]Note:[/yellow] {note}", highlight=False)


# -- runs of flows ------------------------------------------------------------------------


@app.command("data-run")
def data_run(
    name: Annotated[str, typer.Option(help="Dataset name.")],
    source: Annotated[str, typer.Option(help="CSV, JSON Lines, JSON or Parquet file: a path or fsspec URL.")],
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
    as_json: JsonOpt = False,
) -> None:
    """Validate and version a dataset (the data-run flow).

    A user:password@ in a --source URL is moved into a Prefect Secret block before the flow runs;
    the flow gets the URL without it and the block's name."""
    _prefect_ready()
    from provenflow.flows.data_run import data_run as flow

    source, source_credentials = _keep_credentials(source, source_credentials)
    with out.err_console.status(f"data run {name}: read, validate, store…"):
        result = flow(name=name, source=source, suite=suite, source_credentials=source_credentials)
    if as_json:
        out.print_json(result)
        return
    ds = result["dataset"]
    out.console.print(ds["ref"], highlight=False)
    note = "new version" if ds["new"] else "unchanged content: existing version"
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


def _keep_credentials(source: str, block: str | None) -> tuple[str, str | None]:
    """SOURCE without user-info, and the Secret block with the credentials that were in it."""
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

    block = keep_credentials(url, credentials)
    out.err_console.print(
        f"[yellow]Note:[/yellow] the credentials in --source are kept in the Prefect Secret block "
        f"{block!r}; the run gets {escape(repr(url))} and the block's name",
        highlight=False,
    )
    return url, block


@app.command("model-run")
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
        typer.Option(help="Train on this many rows, drawn with --seed (0: every row; default: every row "
                     "up to 1,000,000, a seeded sample of 1,000,000 above)."),
    ] = None,
    test_size: Annotated[float, typer.Option(help="Fraction of rows held out for evaluation.")] = 0.25,
    name: Annotated[str | None, typer.Option(help="Model name (default DATASET-TARGET).")] = None,
    features: Annotated[
        str | None, typer.Option(help="Only these columns, comma-separated (default: every usable column).")
    ] = None,
    exclude: Annotated[str | None, typer.Option(help="Leave these columns out, comma-separated.")] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="Override a column's role: COLUMN=numeric|categorical|datetime (repeatable)."),
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
    _prefect_ready()
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
            features=_columns(features),
            exclude=_columns(exclude),
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


@app.command()
def sweep(
    dataset: Annotated[list[str], typer.Option("--dataset", help="NAME@VERSION or NAME@latest (repeatable).")],
    target: Annotated[str, typer.Option(help="Column to predict.")],
    estimator: Annotated[str, typer.Option(help="Import path, e.g. sklearn.ensemble.RandomForestClassifier.")],
    grid: Annotated[list[str], typer.Option("--grid", help="Hyper-parameter values key=v1,v2,… (repeatable).")],
    random: Annotated[
        int | None, typer.Option("--random", help="Draw N combinations of the grid instead of all of them.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, the estimators and the random draws.")] = 42,
    test_size: Annotated[float, typer.Option(help="Fraction of rows held out for evaluation.")] = 0.25,
    cv: Annotated[int | None, typer.Option("--cv", help="Also record each metric's mean and std over K folds.")] = None,
    max_concurrency: Annotated[int, typer.Option(help="At most this many trials at once.")] = 2,
    runner: Annotated[str, typer.Option(help="threads or processes (without --dask).")] = "threads",
    dask: Annotated[str | None, typer.Option("--dask", help="Run trials on the Dask scheduler at this address.")] = None,
    dask_block: Annotated[
        str | None, typer.Option(help="Run trials on the Dask scheduler whose address is in this String block.")
    ] = None,
    metric: Annotated[str | None, typer.Option(help="Rank by this metric (default f1/r2, CV mean with --cv).")] = None,
    name: Annotated[str | None, typer.Option(help="Model name (default DATASET-TARGET).")] = None,
    promote_best_to: Annotated[
        str | None, typer.Option(help="Send the best trial's model through the promotion gate to this alias.")
    ] = None,
    auto_approve: Annotated[bool, typer.Option(help="With --promote-best-to: skip the approval in the UI.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """One tracked model run per trial (datasets × grid, or --random N draws), trials already done reused
    (the sweep flow); prints the leaderboard."""
    from provenflow.modeling.sweep import parse_grid

    grid_values = parse_grid(grid)
    _prefect_ready()
    from provenflow.flows.sweep import sweep as flow

    with out.err_console.status(f"sweep: {estimator.rsplit('.', 1)[-1]} over {', '.join(dataset)}…"):
        result = flow(
            datasets=dataset, target=target, estimator=estimator, grid=grid_values, random=random, seed=seed,
            test_size=test_size, cv=cv, max_concurrency=max_concurrency, runner=runner, dask=dask,
            dask_block=dask_block, metric=metric, name=name, promote_best_to=promote_best_to,
            auto_approve=auto_approve,
        )  # fmt: skip
    if as_json:
        return out.print_json(result)
    out.warnings(result["failed"])
    key = result["metric"]
    for row in result["leaderboard"]:
        params = " ".join(f"{k}={v}" for k, v in (row["params"] or {}).items())
        out.console.print(f"{row['rank']:>3}  {row['metrics'][key]:.4f}  {row['model']}  {row['dataset']}  {params}",
                          highlight=False)  # fmt: skip
    out.err_console.print(
        f"{result['trials']} trials ranked by {key}: {result['trained']} trained, {result['reused']} reused, "
        f"{len(result['failed'])} failed; sweep run {result['run_id']}"
        + (f"\nPrefect: {result['prefect_url']}" if result.get("prefect_url") else ""),
        highlight=False,
    )
    if result["promotion"]:
        out.promotion(result["promotion"])


def _columns(text: str | None) -> list[str] | None:
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


@app.command()
def reproduce(
    run_id: Annotated[
        str,
        typer.Argument(help="The run to reproduce: its id (or a unique prefix), or the MODEL@VERSION or DATASET@VERSION it made."),
    ],
    code: Annotated[
        str, typer.Option(help="recorded: the run's commit + diff; current: the project as it is now.")
    ] = "recorded",
    as_json: JsonOpt = False,
) -> None:
    """Re-run a recorded run from its inputs and code, and prove the result identical (the reproduce flow)."""
    if code not in ("recorded", "current"):
        raise typer.BadParameter("--code is 'recorded' or 'current'")
    _prefect_ready()
    from provenflow.flows.reproduce import reproduce as flow

    with out.err_console.status(f"reproducing run {run_id}…"):
        result = flow(run_id=run_id, code=code)
    if as_json:
        return out.print_json(result)
    out.reproduction(result)


@app.command()
def promote(
    model: Annotated[str, typer.Argument(help="The candidate, NAME@VERSION.")],
    to: Annotated[
        str, typer.Option("--to", help="The alias to move, e.g. staging or production.")
    ] = "production",
    auto_approve: Annotated[
        bool, typer.Option(help="Skip the approval in the Prefect UI (scripts, demos).")
    ] = False,
    tolerance: Annotated[
        list[str] | None,
        typer.Option(
            help="METRIC=DROP: how much worse than the holder it may be (repeatable; default 0.01)."
        ),
    ] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Score on this dataset's held-out rows instead of the candidate's.")
    ] = None,
    comment: Annotated[str | None, typer.Option(help="Why; recorded with the decision.")] = None,
    require_agreement: Annotated[
        float | None,
        typer.Option(
            help="Also require this agreement (0-1) with the holder while the candidate ran as its shadow "
            "(deploy --shadow-of)."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an alias to a model version behind a metric gate and an approval (the promote flow)."""
    from provenflow.modeling.training import parse_param

    try:
        tolerances = {k: float(v) for k, v in (parse_param(t) for t in tolerance or [])}
    except (TypeError, ValueError):
        raise typer.BadParameter("--tolerance takes METRIC=NUMBER, e.g. f1=0.01") from None
    _prefect_ready()
    from provenflow.flows.promote import promote as flow

    result = flow(
        model=model,
        to=to,
        auto_approve=auto_approve,
        tolerances=tolerances or None,
        dataset=dataset,
        comment=comment,
        require_agreement=require_agreement,
    )
    if as_json:
        out.print_json(result)
    else:
        out.promotion(result)
    if result["decision"] != "approved":
        raise typer.Exit(2)


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")],
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    token: Annotated[
        str | None, typer.Option(envvar="PROVENFLOW_SERVE_TOKEN", help="Bearer token required on /predict.")
    ] = None,
    onnx: Annotated[
        bool, typer.Option(help="Serve through onnxruntime when the model converts and agrees.")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(min=1, help="Server processes on the one port, each with its own prediction-log files."),
    ] = 1,
) -> None:
    """Serve a model version over HTTP (POST /predict, /health, /ready, /metadata); every prediction is logged."""
    from provenflow.serving.run import serve as run_server

    if status := run_server(model, host=host, port=port, token=token, onnx=onnx, workers=workers):
        raise typer.Exit(status)  # a worker printed the one-line error already


@app.command()
def release(
    model: Annotated[str | None, typer.Argument(help="NAME@VERSION or NAME@ALIAS.")] = None,
    registry: Annotated[str, typer.Option(help="Registry host:port to push to.")] = "127.0.0.1:5000",
    registry_block: Annotated[
        str | None, typer.Option(help="A provenflow-container-registry block instead.")
    ] = None,
    base_image: Annotated[
        str, typer.Option(help="Base image (see infra/serving/make-base-image.sh).")
    ] = "provenflow/serving-base:bookworm",
    flows: Annotated[
        bool,
        typer.Option("--flows", help="Instead of a model: the flows image of the Kubernetes work pool "
                     "(this checkout and its locked dependencies)."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a container image of a model version (or with --flows the Kubernetes pool's flows image) without network
    inside the build, push it, record its digest."""
    if flows == (model is not None):
        raise typer.BadParameter("give a MODEL to release, or --flows for the flows image (not both)")
    _prefect_ready()
    if flows:
        return _release_flows(registry, registry_block, base_image, as_json)
    from provenflow.flows.release import release as flow

    with out.err_console.status(f"releasing {model}: bundle, wheels, image, push…"):
        result = flow(model=model, registry=registry, registry_block=registry_block, base_image=base_image)
    if as_json:
        return out.print_json(result)
    out.console.print(result["reference"], highlight=False)
    out.err_console.print(
        f"{result['model']} served by {result['runtime']}; image {result['image']}", highlight=False
    )


def _release_flows(registry: str, registry_block: str | None, base_image: str, as_json: bool) -> None:
    from provenflow.flows.build_flows_image import build_flows_image

    with out.err_console.status("building the flows image: wheels, image, push…"):
        result = build_flows_image(registry=registry, registry_block=registry_block, base_image=base_image)
    if as_json:
        return out.print_json(result)
    out.console.print(result["reference"], highlight=False)
    out.err_console.print(
        f"flows image {result['image']} ({len(result['requirements'])} pinned dependencies); "
        "`provenflow pools create` makes it the Kubernetes work pool's image",
        highlight=False,
    )


@app.command()
def deploy(
    model: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS (released before).")],
    target: Annotated[
        str, typer.Option(help="docker, kubernetes, or local (a background server process, no image).")
    ] = "docker",
    port: Annotated[int | None, typer.Option(help="Host port for docker (default: any free one).")] = None,
    kubernetes_block: Annotated[
        str | None, typer.Option(help="A provenflow-kubernetes-target block.")
    ] = None,
    shadow_of: Annotated[
        str | None,
        typer.Option(
            help="Deploy MODEL as a shadow challenger of this version (e.g. NAME@production), which is "
            "redeployed (on --port) to mirror its requests to MODEL."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the newest release of a model version on Docker or Kubernetes; wait until it is ready."""
    if target not in ("docker", "kubernetes", "local"):
        raise typer.BadParameter("--target is docker, kubernetes or local")
    _prefect_ready()
    from provenflow.flows.deploy import deploy as flow

    with out.err_console.status(f"deploying {model} to {target}…"):
        result = flow(model=model, target=target, port=port, kubernetes_block=kubernetes_block, shadow_of=shadow_of)
    if as_json:
        return out.print_json(result)
    out.console.print(result["endpoint"], highlight=False)
    image = f" ({result['image']})" if result.get("image") else ""  # a local deploy runs no image
    out.err_console.print(f"{result['model']}{image} ready on {target} as {result['name']}", highlight=False)
    if shadow := result.get("shadow"):
        out.err_console.print(
            f"mirroring its requests to the shadow {shadow['model']} ({shadow['name']}, {shadow['endpoint']}); "
            f"compare them with `provenflow shadow-report {result['model']} {shadow['model']}`",
            highlight=False,
        )


def _since(since: str | None) -> datetime | None:
    """--since as an aware time (UTC when it names no zone); None when not given."""
    from datetime import UTC, datetime

    if not since:
        return None
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise typer.BadParameter(f"--since {since!r} is not an ISO time such as 2026-11-29T10:00") from None
    return start if start.tzinfo else start.replace(tzinfo=UTC)


@app.command("drift-check")
def drift_check(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME@VERSION.")],
    since: Annotated[
        str | None, typer.Option(help="Start of the window (ISO time); default: the policy's window.")
    ] = None,
    policy_block: Annotated[str | None, typer.Option(help="A provenflow-drift-policy block.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare a model's logged predictions with its training profile (the drift-monitor flow)."""

    start = _since(since)
    _prefect_ready()
    from provenflow.flows.drift_monitor import drift_monitor as flow

    with out.err_console.status(f"checking {model} for drift…"):
        result = flow(model=model, since=start, policy_block=policy_block)
    if as_json:
        return out.print_json(result)
    out.drift(result)


@app.command("quality-check")
def quality_check(
    model: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME@VERSION.")],
    policy_block: Annotated[
        str | None, typer.Option(help="A provenflow-performance-policy block (default: accuracy, drop 0.05, 200 rows).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Realized performance from the labels that arrived, against training (the quality-monitor flow)."""
    _prefect_ready()
    from provenflow.flows.quality_monitor import quality_monitor as flow

    with out.err_console.status(f"checking {model}'s realized performance…"):
        result = flow(model=model, policy_block=policy_block)
    if as_json:
        return out.print_json(result)
    out.quality(result)


@app.command()
def feedback(
    model: Annotated[str, typer.Argument(help="NAME@VERSION or NAME@ALIAS whose served rows the labels are for.")],
    source: Annotated[Path, typer.Option("--source", help="CSV or Parquet file: a label per served row.")],
    label_column: Annotated[str, typer.Option(help="Column holding the true label.")] = "label",
    id_column: Annotated[str, typer.Option(help="Column holding row ids '<request_id>:<row>'.")] = "id",
    request_id_column: Annotated[
        str, typer.Option(help="Column holding request ids (with --row-column, instead of row ids).")
    ] = "request_id",
    row_column: Annotated[str, typer.Option(help="Column holding the row number within its request.")] = "row",
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

        result = record_feedback(_workspace(), model, source, columns, source="cli", progress=advance)
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


@app.command("shadow-report")
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

    start = _since(since)
    workspace = _workspace()
    challenger = challenger or current_shadow(workspace, production)
    if challenger is None:
        raise ConfigError(
            f"no deployment of {production} mirrors to a shadow; name the challenger "
            f"(provenflow shadow-report {production} NAME@VERSION) or deploy one with --shadow-of {production}"
        )
    report = shadow_agreement(workspace, production, challenger, since=start, window=timedelta(minutes=window))
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
        + (f"; {report['ambiguous_rows']} rows with reused request ids left out" if report["ambiguous_rows"] else ""),
        highlight=False,
    )
    out.warnings([{"level": "warning", "message": f"unreadable segment {s}"} for s in report["skipped_segments"]])


@app.command()
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
    start = _since(since) or until - timedelta(days=1)
    result = estimated_performance(_workspace(), model, since=start, until=until)
    if as_json:
        return out.print_json(result)
    out.performance(result)


# -- reading the ledger -------------------------------------------------------------------


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind (data, model, ...).")] = None,
    as_json: JsonOpt = False,
) -> None:
    from provenflow.tracking import catalog

    workspace = _workspace()
    _settle_crashed(workspace)
    with workspace.ledger.reader() as session:
        rows = catalog.list_runs(session, limit=limit, kind=kind)
    if as_json:
        return out.print_json(rows)
    from rich.markup import escape

    # Fits 80 columns: the kind under the name, metrics one per line, the time without its year.
    out.table(
        "runs",
        ["id", "run", "state", "started", "metrics"],
        [
            [
                r["id"][:8],
                f"{escape(r['name'])}\n[dim]{r['kind']}[/dim]",
                r["state"],
                r["started_at"][5:16].replace("T", " "),
                "\n".join(f"{k}={out.fmt(v)}" for k, v in out.headline_metrics(r["metrics"])),
            ]
            for r in rows
        ],
        keep_whole=("id", "state", "started"),
    )


@runs_app.command("show")
def runs_show(run_id: str, as_json: JsonOpt = False) -> None:
    from provenflow.ledger.refs import resolve_run
    from provenflow.tracking import catalog

    workspace = _workspace()
    _settle_crashed(workspace)
    with workspace.ledger.reader() as session:
        data = catalog.run_dict(resolve_run(session, run_id), full=True)
    if as_json:
        return out.print_json(data)
    out.run_detail(data)


@datasets_app.command("list")
def datasets_list(
    name: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None, as_json: JsonOpt = False
) -> None:
    from provenflow.tracking import catalog

    with _workspace().ledger.reader() as session:
        rows = catalog.list_datasets(session, name)
    if as_json:
        return out.print_json(rows)
    out.table(
        "dataset versions",
        ["ref", "rows", "columns", "size", "created", "run"],
        [[r["ref"], r["rows"], r["columns"], r["size"], r["created_at"][:19], r["run_id"]] for r in rows],
    )


@datasets_app.command("show")
def datasets_show(ref: str, as_json: JsonOpt = False) -> None:
    from provenflow.data.features import column_roles
    from provenflow.ledger.refs import resolve_dataset
    from provenflow.storage.verify import damage_of
    from provenflow.tracking import catalog

    workspace = _workspace()
    with workspace.ledger.reader() as session:
        data = catalog.dataset_dict(resolve_dataset(session, ref), full=True)
    data["damage"] = damage_of(workspace.store, data["hash"])
    roles = column_roles(data["profile"]) if data.get("profile") else {}
    data["roles"] = {n: {"role": r.role, "why": r.why} for n, r in roles.items()}
    if as_json:
        return out.print_json(data)
    out.damage_note(f"dataset {data['ref']}", data["damage"])
    out.console.print(
        f"[bold]{data['ref']}[/bold]  {data['hash']}\n{data['rows']} rows × {data['columns']} columns, {data['size']} bytes, from {data['source']}\nrun {data['run_id']}  stored at {data['uri']}"
    )
    columns = data["profile"]["columns"]
    out.table(
        "columns",
        ["name", "dtype", "role", "missing", "summary"],
        [
            [n, c["dtype"], roles[n].role + ("" if roles[n].used else " (left out)"), c["missing"],
             f"left out: {roles[n].why}" if not roles[n].used
             else f"mean {out.fmt(c['mean'])}, min {out.fmt(c['min'])}, max {out.fmt(c['max'])}" if c.get("kind") == "numeric"
             else ", ".join(f"{k}:{v}" for k, v in list(c.get("frequencies", {}).items())[:5])]
            for n, c in columns.items()
        ],
    )  # fmt: skip


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None, as_json: JsonOpt = False
) -> None:
    from provenflow.tracking import catalog

    with _workspace().ledger.reader() as session:
        rows = catalog.list_models(session, name)
    if as_json:
        return out.print_json(rows)
    out.table(
        "model versions",
        ["ref", "estimator", "metrics", "created", "run"],
        [
            [
                r["ref"],
                r["estimator"],
                ", ".join(f"{k}={out.fmt(v)}" for k, v in (r["metrics"] or {}).items()),
                r["created_at"][:19],
                r["run_id"],
            ]
            for r in rows
        ],
    )


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME (versions, aliases, history) or NAME@VERSION|ALIAS.")],
    as_json: JsonOpt = False,
) -> None:
    from provenflow.ledger.refs import resolve_model
    from provenflow.modeling import registry
    from provenflow.tracking import catalog

    with _workspace().ledger.reader() as session:
        if "@" not in ref:
            data = {
                "name": ref,
                "versions": catalog.list_models(session, ref),
                "aliases": registry.aliases(session, ref),
                "history": registry.alias_history(session, ref),
            }
            if not data["versions"]:
                resolve_model(session, f"{ref}@latest")  # raises the helpful "no model named" error
        else:
            data = catalog.model_dict(resolve_model(session, ref), full=True)
    if as_json:
        return out.print_json(data)
    if "@" not in ref:
        return out.model_overview(data)
    out.model_detail(data)


@models_app.command("sign")
def models_sign(
    refs: Annotated[list[str] | None, typer.Argument(help="NAME@VERSION|ALIAS to seal.")] = None,
    all_versions: Annotated[bool, typer.Option("--all", help="Every model version in the ledger.")] = False,
    previous_key_file: Annotated[
        Path | None, typer.Option(help="Key rotation: re-seal versions whose seal verifies under this key.")
    ] = None,
    replace: Annotated[
        bool, typer.Option(help="Also overwrite seals that do not verify (only after checking the model).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Seal model versions so they may be loaded (see SECURITY.md): for versions recorded before seals,
    or after a key rotation. Their stored bytes must still match the recorded hash. A sealed model gets
    unpickled, which runs code: seal only models you have checked."""
    from provenflow.errors import ConfigError
    from provenflow.modeling import registry, signing

    if bool(refs) == all_versions:
        raise ConfigError("give model versions to seal (NAME@VERSION …) or --all, not both and not neither")
    key = signing.signing_key(create=True)
    previous = signing.read_key_file(previous_key_file) if previous_key_file else None
    outcomes = registry.seal_versions(_workspace(), refs or [], key, previous, replace)
    if as_json:
        return out.print_json([o.as_dict() for o in outcomes])
    out.table(
        f"model seals (key {key.id}, {key.source})",
        ["ref", "hash", "outcome"],
        [[o.ref, o.hash[:12], o.outcome] for o in outcomes],
    )


@app.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")], as_json: JsonOpt = False
) -> None:
    """Parameters and metrics of runs side by side."""
    from provenflow.tracking import catalog

    with _workspace().ledger.reader() as session:
        data = catalog.compare_runs(session, run_ids)
    if as_json:
        return out.print_json(data)
    heads = [f"{r['name']}\n{r['id'][:8]}" for r in data["runs"]]
    rows = [["outputs", *[", ".join(r["outputs"]) for r in data["runs"]]]]
    rows += [[f"param {k}", *v] for k, v in data["params"].items()]
    rows += [[f"metric {k}", *v] for k, v in data["metrics"].items()]
    out.table("comparison", ["", *heads], rows)


@app.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="A run id, dataset@version or model@version.")],
    as_json: JsonOpt = False,
) -> None:
    """Upstream (datasets, runs, code, environment) and downstream (runs and models that used it)."""
    from provenflow.storage.verify import mark_lineage
    from provenflow.tracking.lineage import lineage as build

    workspace = _workspace()
    with workspace.ledger.reader() as session:
        graph = mark_lineage(build(session, ref), workspace.store)
    if as_json:
        return out.print_json(graph)
    out.lineage_tree(graph)


# -- keeping the store sound ------------------------------------------------------------


@app.command()
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
    workspace = _workspace()
    crashed, note = [], None
    if not dry_run:
        crashed, note = crashes.settle(workspace.ledger, prefect=_prefect_connect_quietly() is None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress

    with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), console=out.err_console,
                  transient=True, disable=as_json) as bar:  # fmt: skip
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


@app.command()
def verify(as_json: JsonOpt = False) -> None:
    """Hash every object the ledger refers to; list missing or corrupt ones and what uses them (exit 1 if any)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from provenflow.storage.references import referenced_hashes
    from provenflow.storage.verify import object_size, verify_store

    workspace = _workspace()
    with workspace.ledger.reader() as session:
        hashes = referenced_hashes(session)
    total = sum(object_size(workspace.store, h) for h in hashes)
    columns = ("{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out.err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task("verifying objects", total=total)
        report = verify_store(workspace, lambda _h, size: bar.advance(task, size), hashes=hashes)
    if as_json:
        out.print_json(report.as_dict())
    else:
        out.verify_report(report.as_dict())
    if report.damaged:
        raise typer.Exit(1)


def _prefect_connect_quietly() -> str | None:
    """Point at the Prefect API if one answers; the notice when none does."""
    from provenflow.platform import server

    return server.connect(quiet=True)


# -- the local Prefect server -------------------------------------------------------------


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


@app.command()
def up(as_json: JsonOpt = False) -> None:
    """Start everything the Prefect UI needs (idempotent): the project's server, provenflow's block
    types, the work pools, every deployment of prefect.yaml (schedules, triggers) and a process worker."""
    from provenflow.platform import stack

    with out.err_console.status("starting") as spinner:
        report = stack.up(lambda msg: spinner.update(msg + "…"))
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


@app.command()
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


@app.command()
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


@app.command()
def demo() -> None:
    """The end-to-end demo: penguins data run, three model runs, lineage and comparison."""
    from provenflow.demo.run import main as run_demo

    run_demo()


if __name__ == "__main__":
    run()
