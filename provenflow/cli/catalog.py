"""Reading the ledger: `provenflow runs …`, `datasets …`, `models …`, `compare` and `lineage`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from provenflow.cli import output as out
from provenflow.cli.root import (
    JsonOpt,
    default_workspace,
    settle_crashed,
)

runs_app = typer.Typer(help="Recorded runs.", no_args_is_help=True)
datasets_app = typer.Typer(help="Dataset versions.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions.", no_args_is_help=True)

commands = typer.Typer()  # registered on the root app by provenflow.cli.main, in its order


@runs_app.command("list")
def runs_list(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    kind: Annotated[str | None, typer.Option(help="Only runs of this kind (data, model, ...).")] = None,
    as_json: JsonOpt = False,
) -> None:
    from provenflow.tracking import catalog

    workspace = default_workspace()
    settle_crashed(workspace)
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
def runs_show(
    run_id: str,
    diff: Annotated[
        bool, typer.Option("--diff", help="Print the uncommitted changes the run recorded (a git diff).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    from provenflow.ledger.refs import resolve_run
    from provenflow.tracking import catalog

    workspace = default_workspace()
    settle_crashed(workspace)
    with workspace.ledger.reader() as session:
        data = catalog.run_dict(resolve_run(session, run_id), full=True)
    if diff:  # the bytes reproduce applies, checked against their hash as it reads them
        from provenflow.digest import Digest

        recorded = data["code"]["diff_hash"]
        if not recorded:
            return out.err_console.print(f"run {data['id']} recorded no uncommitted changes", highlight=False)
        text = workspace.store.read_bytes(Digest(recorded)).decode(errors="replace")
        out.console.print(text, end="", highlight=False, markup=False, soft_wrap=True)
        return None
    if as_json:
        return out.print_json(data)
    out.run_detail(data)


@datasets_app.command("list")
def datasets_list(
    name: Annotated[str | None, typer.Argument(help="Only this dataset.")] = None, as_json: JsonOpt = False
) -> None:
    from provenflow.tracking import catalog

    with default_workspace().ledger.reader() as session:
        rows = catalog.list_datasets(session, name)
    if as_json:
        return out.print_json(rows)
    # Fits 80 columns as `runs list` does: the ref whole, the time without its year, the run's short id.
    out.table(
        "dataset versions",
        ["ref", "rows", "columns", "bytes", "created", "run"],
        [[r["ref"], r["rows"], r["columns"], r["size"], r["created_at"][5:16].replace("T", " "), r["run_id"][:8]]
         for r in rows],
        keep_whole=("ref", "rows", "columns", "bytes", "created", "run"),
    )  # fmt: skip


@datasets_app.command("show")
def datasets_show(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION, or NAME for its latest version.")],
    as_json: JsonOpt = False,
) -> None:
    from provenflow.data.features import column_roles
    from provenflow.ledger.refs import resolve_dataset
    from provenflow.storage.verify import damage_of
    from provenflow.tracking import catalog

    ref = ref if "@" in ref else f"{ref}@latest"  # `datasets show penguins`, as `models show NAME` takes
    workspace = default_workspace()
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
    from provenflow.ui.names import short_estimator

    with default_workspace().ledger.reader() as session:
        rows = catalog.list_models(session, name)
    if as_json:
        return out.print_json(rows)
    out.table(
        "model versions",
        ["ref", "estimator", "metrics", "created", "run"],
        [
            [
                r["ref"],
                short_estimator(str(r["estimator"])),
                "\n".join(f"{k}={out.fmt(v)}" for k, v in out.headline_metrics(r["metrics"] or {})),
                r["created_at"][5:16].replace("T", " "),
                r["run_id"][:8],
            ]
            for r in rows
        ],
        keep_whole=("ref", "created", "run"),
    )


@models_app.command("show")
def models_show(
    ref: Annotated[str, typer.Argument(help="NAME (versions, aliases, history) or NAME@VERSION|ALIAS.")],
    as_json: JsonOpt = False,
) -> None:
    from provenflow.ledger.refs import resolve_model
    from provenflow.modeling import registry
    from provenflow.tracking import catalog

    with default_workspace().ledger.reader() as session:
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
    outcomes = registry.seal_versions(default_workspace(), refs or [], key, previous, replace)
    if as_json:
        return out.print_json([o.as_dict() for o in outcomes])
    out.table(
        f"model seals (key {key.id}, {key.source})",
        ["ref", "hash", "outcome"],
        [[o.ref, o.hash[:12], o.outcome] for o in outcomes],
    )


@runs_app.command("seal")
def runs_seal(
    run_ids: Annotated[list[str], typer.Argument(help="Run ids (or unique prefixes) to seal.")],
    replace: Annotated[
        bool, typer.Option(help="Also overwrite seals that do not verify (only after checking the run's code).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Seal runs' code identities (commit, diff, entry point, environment, parameters) so that
    `provenflow reproduce` may execute them (see SECURITY.md): for runs recorded before code seals, or
    after a key rotation. Reproduction executes what you seal: check the commit and the diff first."""
    from provenflow.modeling import signing
    from provenflow.tracking import code_seal

    key = signing.signing_key(create=True)
    with default_workspace().ledger.transaction() as session:
        outcomes = code_seal.seal_runs(session, run_ids, key, replace)
    if as_json:
        return out.print_json([{"run": r, "outcome": o} for r, o in outcomes])
    out.table(f"run code seals (key {key.id}, {key.source})", ["run", "outcome"], [list(o) for o in outcomes])


@models_app.command("public-key")
def models_public_key() -> None:
    """Print this machine's public key (ed25519-public:HEX): what model servers, deployments and
    reproducers are given as PROVENFLOW_SIGNING_KEY. It verifies seals and cannot make them."""
    from provenflow.errors import ConfigError
    from provenflow.modeling import signing

    key = signing.signing_key()
    if not isinstance(key, signing.Ed25519Key):
        raise ConfigError(
            f"this machine's signing key ({key.source}) is a legacy HMAC secret, which has no public half; "
            "move to Ed25519 first (SECURITY.md, 'Moving to Ed25519')"
        )
    print(key.public_text())


@commands.command()
def compare(
    run_ids: Annotated[list[str], typer.Argument(help="Two or more run ids.")], as_json: JsonOpt = False
) -> None:
    """Parameters and metrics of runs side by side."""
    from provenflow.tracking import catalog

    with default_workspace().ledger.reader() as session:
        data = catalog.compare_runs(session, run_ids)
    if as_json:
        return out.print_json(data)
    heads = [f"{r['name']}\n{r['id'][:8]}" for r in data["runs"]]
    rows = [["outputs", *[", ".join(r["outputs"]) for r in data["runs"]]]]
    rows += [[f"param {k}", *v] for k, v in data["params"].items()]
    rows += [[f"metric {k}", *v] for k, v in data["metrics"].items()]
    out.table("comparison", ["", *heads], rows)


@commands.command()
def lineage(
    ref: Annotated[str, typer.Argument(help="A run id, dataset@version or model@version.")],
    as_json: JsonOpt = False,
) -> None:
    """Upstream (datasets, runs, code, environment) and downstream (runs and models that used it)."""
    from provenflow.storage.verify import mark_lineage
    from provenflow.tracking.lineage import lineage as build

    workspace = default_workspace()
    with workspace.ledger.reader() as session:
        graph = mark_lineage(build(session, ref), workspace.store)
    if as_json:
        return out.print_json(graph)
    out.lineage_tree(graph)
