"""The model's way to production: `provenflow promote`, `retrain`, `serve`, `release` and `deploy`."""

from __future__ import annotations

from typing import Annotated

import typer

from provenflow.cli import output as out
from provenflow.cli.root import JsonOpt, prefect_ready

commands = typer.Typer()  # registered on the root app by provenflow.cli.main, in its order


@commands.command()
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
    prefect_ready()
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


@commands.command()
def retrain(
    model: Annotated[str, typer.Argument(help="The champion, NAME@ALIAS or NAME@VERSION.")],
    source: Annotated[
        str | None,
        typer.Option(help="The newest data (default: where the champion's training data came from)."),
    ] = None,
    deployment: Annotated[
        str | None,
        typer.Option(help="Retrain with the team's own flow, FLOW/DEPLOYMENT (default: the policy's)."),
    ] = None,
    to: Annotated[str, typer.Option("--to", help="The alias the challenger is promoted to.")] = "production",
    auto_approve: Annotated[
        bool | None,
        typer.Option(
            "--auto-approve/--wait-for-approval",
            help="Skip the approval in the Prefect UI, or wait for it (default: the policy's, else skip).",
        ),
    ] = None,
    redeploy: Annotated[bool, typer.Option(help="Redeploy where the champion runs.")] = True,
    policy_block: Annotated[str | None, typer.Option(help="The model's provenflow-drift-policy block.")] = None,
    drift_report: Annotated[
        str | None, typer.Option(help="The drift report that prompted it (its id; recorded as an input).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Retrain a model on the newest data, gate, promote and redeploy the challenger (the retrain flow)."""
    prefect_ready()
    from provenflow.flows.retrain import retrain as flow

    with out.err_console.status(f"retraining {model}…"):
        result = flow(model=model, source=source, deployment=deployment, alias=to, auto_approve=auto_approve,
                      redeploy=redeploy, policy_block=policy_block, drift_report=drift_report)  # fmt: skip
    if as_json:
        out.print_json(result)
    else:
        out.retrained(result)
    if result["promotion"] not in ("approved", "unchanged"):
        raise typer.Exit(2)  # as promote's rejection, with --json too


@commands.command()
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


@commands.command()
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
        typer.Option(
            "--flows",
            help="Instead of a model: the flows image of the Kubernetes work pool "
            "(this checkout and its locked dependencies).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build a container image of a model version (or with --flows the Kubernetes pool's flows image) without network
    inside the build, push it, record its digest."""
    if flows == (model is not None):
        raise typer.BadParameter("give a MODEL to release, or --flows for the flows image (not both)")
    prefect_ready()
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


@commands.command()
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
    prefect_ready()
    from provenflow.flows.deploy import deploy as flow

    with out.err_console.status(f"deploying {model} to {target}…"):
        result = flow(
            model=model, target=target, port=port, kubernetes_block=kubernetes_block, shadow_of=shadow_of
        )
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
