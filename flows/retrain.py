"""retrain: what a drift report starts. New data run → model run with the champion's estimator and
parameters → promotion through the registry's gate (against the champion, on the new data's
held-out rows) → release and redeploy to the champion's target.

A team that trains with its own code names its own training deployment instead (the policy's
``retrain_deployment``, or DEPLOYMENT): that flow run replaces the data run and model run, and the
model version it registered (``provenflow.log_model`` under the champion's name) goes through the
same gate, promotion and redeploy. With no deployment named, a model the team's own code trained is
retrained by that code: the deployment whose flow run trained it, else the notebook, script or flow
its training run recorded as its entry point, run again in the project as it is now, on the newest
data."""

from __future__ import annotations

from sqlalchemy import select

import provenflow
from provenflow.digest import Digest
from provenflow.flows._flow import flow
from provenflow.flows.data_run import data_run
from provenflow.flows.deploy import deploy
from provenflow.flows.model_run import model_run
from provenflow.flows.promote import promote
from provenflow.flows.release import release
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_model
from provenflow.modeling import registry, signing
from provenflow.tasks.retrain import deployment_that_trained, rerun_training_code, run_training_deployment
from provenflow.tasks.workspace import open_workspace
from provenflow.tracking import code_seal


@flow(name="retrain", flow_run_name="retrain-{model}")
def retrain(
    model: str,
    source: str | None = None,
    source_credentials: str | None = None,
    alias: str = "production",
    auto_approve: bool | None = None,
    redeploy: bool = True,
    drift_report: str | None = None,
    registry_address: str = "127.0.0.1:5000",
    policy_block: str | None = None,
    deployment: str | None = None,
    deployment_parameters: dict | None = None,
    deployment_timeout: int = 3600,
    ledger_block: str | None = None,
    store_block: str | None = None,
) -> dict:
    """Retrain MODEL (the champion: NAME@VERSION or NAME@ALIAS) on SOURCE, the newest data (default:
    the source its training data came from, or the POLICY_BLOCK's retrain source; SOURCE_CREDENTIALS
    names a Secret block for it), promote the
    challenger to ALIAS if it passes the gate (waiting for the UI approval unless AUTO_APPROVE, by
    default the policy's setting, else on), and redeploy where the champion runs.
    DEPLOYMENT (FLOW/DEPLOYMENT; default the policy's retrain_deployment) retrains with the team's
    own flow instead, run with DEPLOYMENT_PARAMETERS (default the policy's) and awaited up to
    DEPLOYMENT_TIMEOUT seconds. Before the team's own code runs, the datasets the champion's run read
    that a data run made are read again from their sources (SOURCE instead, when there is one), so
    its ``provenflow.dataset("NAME@latest")`` is the newest data."""
    workspace = open_workspace(ledger_block, store_block)
    if policy_block:  # the model's drift policy says where its newest data is and who approves
        from provenflow.blocks.drift import DriftPolicy

        policy = DriftPolicy.load(policy_block)
        if not source:
            source, source_credentials = policy.retrain_source, policy.retrain_source_credentials
        auto_approve = policy.auto_approve if auto_approve is None else auto_approve
        if not deployment and policy.retrain_deployment:
            deployment = policy.retrain_deployment
            deployment_parameters = policy.retrain_parameters if deployment_parameters is None else deployment_parameters
    auto_approve = True if auto_approve is None else auto_approve
    sql: dict = {}  # a SQL source's query or table, read again as the training data was
    with workspace.ledger.reader() as session:
        champion = resolve_model(session, model)
        trained = session.get(m.Run, champion.run_id)
        dataset = next(
            (io.dataset_version for io in trained.io if io.direction == "input" and io.kind == "dataset"), None
        )
        producer = session.get(m.Run, dataset.run_id) if dataset and dataset.run_id else None
        key = signing.signing_key()
        # A team's code reads its datasets itself: their sources are read again first (the recipe's
        # model run below makes its own data run).
        refreshable = [] if trained.flow == "model-run" else data_sources(session, trained, key)
        if source and len(refreshable) == 1:  # the newest data is where the caller says
            refreshable[0] = {**refreshable[0], "source": source, "source_credentials": source_credentials}
        if not source and producer:  # where the training data came from, with the same credentials
            sql = read_again(producer, key)
            source, source_credentials = sql.pop("source", None), sql.pop("source_credentials", None)
        deployed = session.scalars(
            select(m.Deployment)
            .where(m.Deployment.model_version_id == champion.id)
            .order_by(m.Deployment.id.desc())
        ).first()
        report = (
            session.get(m.DriftReport, int(drift_report)) if drift_report and drift_report.isdigit() else None
        )
        champion_ref, params = champion.ref, dict(trained.parameters)
        built_in = trained.flow == "model-run"  # the recipe's own runs retrain the recipe's way
        trained_in = trained.prefect_flow_run_id
        entry = None if built_in else trained.code_entry  # the notebook, script or flow that trained it
        target = deployed.target if deployed else None
        # Redeploy the way the champion was deployed (its port, its Kubernetes target block).
        deployed_with = session.get(m.Run, deployed.run_id).parameters if deployed and deployed.run_id else {}
        report_hash = report.report_hash if report else None
    if not deployment and not built_in and (found := deployment_that_trained(trained_in)):
        # A team's own flow, started from its deployment, made the champion: that flow retrains it.
        deployment = found[0]
        deployment_parameters = found[1] if deployment_parameters is None else deployment_parameters
    if deployment:
        entry = None
    if not source and not deployment and not entry:
        raise registry.PromotionError(
            f"no data source to retrain {champion_ref} on; pass source=, or deployment= to retrain with "
            "the team's own training flow"
        )
    if not deployment and not entry and dataset is None:
        raise registry.PromotionError(
            f"{champion_ref} records no training dataset to retrain the built-in way; name the team's own "
            "training deployment (deployment=, or the policy's retrain_deployment)"
        )
    if deployment or entry:
        source = None  # the team's own code reads its data itself: no source is used, none recorded
    parameters = {"model": champion_ref, "source": source, "alias": alias, "drift_report": drift_report,
                  "deployment": deployment, "deployment_parameters": deployment_parameters,
                  "entry": entry}  # fmt: skip
    with provenflow.start(f"retrain-{champion.name}", kind="retrain", flow="retrain", parameters=parameters,
                          workspace=workspace) as run:  # fmt: skip
        run.input(champion)
        if report_hash:
            run.link("input", "drift-report", f"drift-report-{drift_report}", Digest(report_hash))
        training_run = training_runs = None
        refreshed: list[str] = []
        if deployment:  # the team's own flow trains it, and registers it under the champion's name
            refreshed = refresh_data(refreshable, ledger_block, store_block)
            training_run = run_training_deployment(deployment, deployment_parameters or {}, deployment_timeout)
            with workspace.ledger.reader() as session:
                made = registry.registered_by_flow_run(session, training_run, champion.name)
                challenger_ref, challenger_metrics = made.ref, dict(made.metrics or {})
            new_data = None  # the gate scores on the rows the challenger's own run held out
        elif entry:  # the notebook (script, flow) that trained the champion trains the challenger
            refreshed = refresh_data(refreshable, ledger_block, store_block)
            training_runs = rerun_training_code(workspace, champion.run_id)
            with workspace.ledger.reader() as session:
                made = registry.registered_by_runs(session, training_runs, champion.name)
                challenger_ref, challenger_metrics = made.ref, dict(made.metrics or {})
            new_data = None
        else:
            data = data_run(name=dataset.name, source=source, source_credentials=source_credentials,
                            ledger_block=ledger_block, store_block=store_block, **sql)  # fmt: skip
            challenger = model_run(
                dataset=data["dataset"]["ref"], target=params["target"], estimator=params["estimator"],
                params=params.get("params") or {}, seed=params.get("seed", 42),
                test_size=params.get("test_size", 0.25), features=params.get("features"),
                exclude=params.get("exclude"), roles=params.get("roles"), task=params.get("task"),
                name=champion.name, ledger_block=ledger_block, store_block=store_block,
            )  # fmt: skip
            challenger_ref = f"{challenger['model']['name']}@{challenger['model']['version']}"
            challenger_metrics, new_data = challenger["metrics"], data["dataset"]["ref"]
            refreshed = [new_data]
        # The same code on the same data gave the champion's own bytes back: nothing to promote or ship.
        unchanged = challenger_ref == champion_ref
        redeploying = redeploy and target is not None and not unchanged
        if redeploying and target != "local":  # the image first: a failed build must not move the alias
            release(
                model=challenger_ref,
                registry=registry_address,
                ledger_block=ledger_block,
                store_block=store_block,
            )
        decision = {"decision": "unchanged"} if unchanged else promote(
            model=challenger_ref, to=alias, auto_approve=auto_approve, dataset=new_data,
            comment=f"retrained after drift report {drift_report}" if drift_report else "retrained",
            ledger_block=ledger_block, store_block=store_block,
        )  # fmt: skip
        placed = None
        if decision["decision"] == "approved" and redeploying:
            placed = deploy(
                model=challenger_ref, target=target, port=deployed_with.get("port"),
                kubernetes_block=deployed_with.get("kubernetes_block"), ledger_block=ledger_block,
                store_block=store_block,
            )  # fmt: skip
        with workspace.ledger.reader() as session:
            run.output_version(resolve_model(session, challenger_ref))
        run.log_metrics({f"challenger.{k}": v for k, v in challenger_metrics.items()})
    return {
        "run_id": run.id,
        "champion": champion_ref,
        "challenger": challenger_ref,
        "dataset": new_data,
        "datasets": refreshed,  # the data runs made first: the newest data, where the team's code finds it
        "training_flow_run": training_run,
        "training_runs": training_runs,
        "training_entry": entry,
        "promotion": decision["decision"],
        "why": decision.get("comment"),  # the gate's failing metrics, or the approver's words
        "gate": decision.get("gate"),
        "deployment": placed,
    }


def data_sources(session, trained: m.Run, key: signing.Key) -> list[dict]:
    """The data runs that made the datasets TRAINED read, as parameters for reading their sources
    again: a team's code reads ``provenflow.dataset("NAME@latest")``, so a retrain that only re-ran
    it trained on the data it had before (new partitions, a --source given: ignored)."""
    found = []
    for io in trained.io:
        made = io.dataset_version.run_id if io.direction == "input" and io.dataset_version else None
        producer = session.get(m.Run, made) if made else None
        if producer is not None and producer.flow == "data-run" and producer.parameters.get("source"):
            found.append({"name": io.dataset_version.name, **read_again(producer, key)})
    return found


def read_again(producer: m.Run, key: signing.Key) -> dict:
    """The data_run arguments that read PRODUCER's source again (source, its Secret block, a SQL
    query or table), from its parameters once its seal verifies: a changed ledger row must not
    choose what a retrain reads, with whose credentials."""
    recorded = code_seal.verified_parameters(producer, key)
    return {k: recorded[k] for k in ("source", "source_credentials", "query", "table") if recorded.get(k)}


def refresh_data(sources: list[dict], ledger_block: str | None, store_block: str | None) -> list[str]:
    """A data run of each source (only what changed is read and stored); the versions they made."""
    return [data_run(**source, ledger_block=ledger_block, store_block=store_block)["dataset"]["ref"]
            for source in sources]  # fmt: skip
