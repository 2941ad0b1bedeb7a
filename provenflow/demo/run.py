"""The end-to-end demo on the bundled Palmer penguins data (CC0, from the palmerpenguins package):
a data run, three model runs with different estimators and parameters, lineage and a comparison;
then the best model promoted, deployed (a local server process), sent production traffic, checked
for drift, labels sent back and realized accuracy checked against training, checked for drift again
after the traffic shifts, and retrained, gated, promoted and redeployed. All
recorded in the ledger and visible in the Prefect UI."""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console

from provenflow.errors import ProvenflowError

# The ledger, the platform and the workspace (SQLAlchemy, Prefect's settings) are imported inside the
# functions: the demo's first line then shows within ~1 s of the command, before those imports.

DATA = Path(__file__).parent / "penguins.csv"
EXPERIMENTS = [
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 10, "max_depth": 2}),
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 200, "min_samples_leaf": 2}),
    ("sklearn.linear_model.LogisticRegression", {"C": 1.0, "max_iter": 500}),
]


def main() -> None:
    console = Console()
    # Said at once: starting the stack takes ~45 s the first time, and a spinner shows nothing when the
    # output is not a terminal (`make demo | tee demo.log`), so each step is also a line there.
    console.print(
        "[bold]provenflow demo[/bold]: starting this project's Prefect server, its deployments and a worker "
        "(about 45 s the first time), then 9 steps on the bundled penguins data (1–2 minutes).",
        highlight=False,
    )
    from provenflow.platform import server, stack
    from provenflow.workspace import Workspace

    server.prepare_env(quiet=True)
    with console.status("provenflow up…") as spinner:
        # The whole stack, as `provenflow up`: deployments, schedules, the retrain trigger, a worker.
        def say(msg: str) -> None:
            spinner.update(msg + "…")
            if not console.is_terminal:
                console.print(f"  {msg}…", highlight=False)

        live = stack.up(say)
    console.print(
        f"[bold]Prefect UI:[/bold] {live.ui_url}  ({len(live.deployments)} deployments, "
        f"worker pid {live.processes.get('worker')})"
    )
    notice = server.connect(quiet=True)
    if notice:
        console.print(notice)

    from provenflow.cli import output
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run
    from provenflow.settings import get_settings
    from provenflow.tracking import catalog
    from provenflow.tracking.lineage import lineage

    console.rule("1. data run: validate and version the penguins data")
    # The demo's data source is a copy that "receives new data" later, as a real source would.
    source = get_settings().home_dir / "demo" / "penguins.csv"
    source.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DATA, source)
    data = data_run(name="penguins", source=str(source))
    ref = data["dataset"]["ref"]
    console.print(
        f"dataset {ref}: {data['dataset']['rows']} rows, "
        f"{data['validation']['successful']}/{data['validation']['evaluated']} expectations passed"
    )

    console.rule("2. three model runs: predict each penguin's sex")
    results = []
    for estimator, params in EXPERIMENTS:
        result = model_run(dataset=ref, target="sex", estimator=estimator, params=params, seed=7)
        model = f"{result['model']['name']}@{result['model']['version']}"
        console.print(
            f"{model}  {estimator.rsplit('.', 1)[1]} "
            + " ".join(f"{k}={v}" for k, v in params.items())
            + "\n    "
            + "  ".join(f"{k}={v:.3f}" for k, v in result["metrics"].items())
        )
        results.append(result)

    best = max(results, key=lambda r: r["metrics"]["f1"])
    best_ref = f"{best['model']['name']}@{best['model']['version']}"
    workspace = Workspace.default()
    with workspace.ledger.reader() as session:
        console.rule(f"3. lineage of the best model, {best_ref}")
        output.lineage_tree(lineage(session, best_ref))
        console.rule("4. the three runs compared")
        compared = catalog.compare_runs(session, [r["run_id"] for r in results])
    # Short labels and values, so the table fits 80 columns: run ids, parameter names, class names.
    heads = [f"run {r['id'][:8]}" for r in compared["runs"]]
    rows = [
        [k.removeprefix("params."), *(x.rsplit(".", 1)[-1] if k == "estimator" else x for x in v)]
        for k, v in compared["params"].items()
        if len(set(map(str, v))) > 1
    ]
    rows += [[k, *v] for k, v in compared["metrics"].items()]
    output.table("runs side by side (parameters that differ, and metrics)", ["", *heads], rows)

    production = _production_story(console, best_ref, source, live.ui_url)
    console.print(
        f"\nOpen {live.ui_url}: flow runs with their run cards, the deployments (launch any from "
        "its form), the drift monitor's schedule, the retrain automation, the work pool's worker.\n"
        "Try (from the repository, or after `source .venv/bin/activate` without the .venv/bin/ prefix):\n"
        "  .venv/bin/provenflow runs list\n  .venv/bin/provenflow models show penguins-sex\n"
        "  .venv/bin/provenflow lineage "
        + production
        + "\n[bold]Stop everything (server, worker, model servers): .venv/bin/provenflow down[/bold]"
    )


def _production_story(console: Console, best_ref: str, source: Path, ui_url: str) -> str:
    """Promote, deploy (a local server process), send production traffic, watch drift, retrain."""
    import time
    from datetime import UTC, datetime

    from provenflow.cli import output
    from provenflow.data.datasets import read_table
    from provenflow.flows.deploy import deploy
    from provenflow.flows.drift_monitor import drift_monitor
    from provenflow.flows.promote import promote
    from provenflow.flows.quality_monitor import quality_monitor
    from provenflow.ledger.refs import resolve_model
    from provenflow.workspace import Workspace

    console.rule(f"5. promote {best_ref} to production and deploy it")
    decision = promote(model=best_ref, to="production", auto_approve=True, comment="best of the demo runs")
    console.print(f"{decision['decision']}: {decision['model']} is penguins-sex@production")
    placed = deploy(model="penguins-sex@production", target="local")
    endpoint = placed["endpoint"]
    console.print(f"serving at {endpoint} (POST /predict; every prediction is logged)")

    features = read_table(str(DATA)).drop(columns=["sex"])
    started = datetime.now(UTC)
    _send(endpoint, features.sample(n=600, replace=True, random_state=1))
    time.sleep(2)  # the server writes its prediction log every second
    console.rule("6. drift check on traffic like the training data")
    output.drift(drift_monitor(model="penguins-sex@production", since=started))

    console.rule("7. labels arrive: realized accuracy against training")
    # Penguins whose sex was checked later: their predictions, then the truth, by the ids /predict gave.
    checked = read_table(str(DATA)).dropna(subset=["sex"]).sample(n=300, replace=True, random_state=3)
    ids = _send(endpoint, checked.drop(columns=["sex"]))
    stored = _feedback(endpoint, ids, checked["sex"].tolist())
    console.print(f"POST /feedback: {stored['stored']} labels stored, {stored['unknown']} with an unknown id")
    time.sleep(2)
    output.quality(quality_monitor(model="penguins-sex@production"))

    shifted_at = datetime.now(UTC)
    shifted = features.sample(n=600, replace=True, random_state=2)
    shifted["body_mass_g"] += 900  # heavier penguins: a shift in one feature
    _send(endpoint, shifted)
    # Meanwhile the source has received newer labelled data with the same shift: retraining reads it.
    fresh = read_table(str(DATA))
    fresh["body_mass_g"] += 900
    fresh.to_csv(source, index=False)
    time.sleep(2)
    console.rule("8. drift check on shifted traffic")
    report = drift_monitor(model="penguins-sex@production", since=shifted_at)
    output.drift(report)

    console.rule("9. Prefect retrains: drift event → retrain deployment → worker")
    console.print(
        "The drift event fired the retrain deployment's trigger (prefect.yaml); the worker runs it: "
        "retrain on the newest data, gate, promote, redeploy."
    )
    with console.status("waiting for the retrain flow run…") as spinner:
        flow_run = _wait_for_retrain(shifted_at, lambda state: spinner.update(f"retrain flow run: {state}…"))
    link = f"{ui_url}/runs/flow-run/{flow_run.id}"
    if not flow_run.state or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state else "no state"
        raise ProvenflowError(
            f"the retrain flow run {flow_run.name} ended {state}: "
            f"{flow_run.state.message if flow_run.state else ''} (see {link})"
        )
    from sqlalchemy import select

    from provenflow.ledger import models as m

    with Workspace.default().ledger.reader() as session:
        challenger = resolve_model(session, "penguins-sex@latest").ref
        production = resolve_model(session, "penguins-sex@production")
        champion = production.ref
        # The redeploy moved production to a new server (blue-green: a new port); the old address is gone.
        serving = session.scalar(
            select(m.Deployment.endpoint)
            .where(m.Deployment.model_version_id == production.id, m.Deployment.state == "ready")
            .order_by(m.Deployment.id.desc())
            .limit(1)
        )
    console.print(f"retrain flow run '{flow_run.name}' Completed: {link}")
    console.print(f"challenger {challenger}; penguins-sex@production is now {champion}", highlight=False)
    if serving:
        console.print(f"{champion} serves at {serving} (the redeploy replaced the server of step 5)", highlight=False)
    return challenger


def _wait_for_retrain(after, on_state, timeout: float = 600.0):
    """The retrain deployment's first flow run created after ``after``, once it has ended."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from provenflow.platform import server

    deadline = time.monotonic() + timeout
    with temporary_settings({PREFECT_API_URL: server.api_url()}), get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["retrain"]))
            )
            runs = sorted((r for r in runs if r.created and r.created >= after), key=lambda r: r.created)
            if runs:
                state = runs[0].state
                on_state(state.name if state else "scheduled")
                if state and state.is_final():
                    return runs[0]
            time.sleep(1)
    raise ProvenflowError(
        f"no retrain flow run ended within {timeout:.0f} s of the drift event: is the worker running "
        "(provenflow up; its log is .provenflow/worker.log)?"
    )


def _send(endpoint: str, frame) -> list[str]:
    """Production-like traffic: batches of 100 rows to /predict; the row ids the server answered."""
    import json

    ids = []
    for start in range(0, len(frame), 100):
        records = json.loads(frame.iloc[start : start + 100].to_json(orient="records"))
        ids += _post(f"{endpoint}/predict", {"records": records})["ids"]
    return ids


def _feedback(endpoint: str, ids: list[str], labels: list) -> dict:
    """The true labels of served rows, named by their row ids."""
    return _post(
        f"{endpoint}/feedback", {"labels": [{"id": i, "label": y} for i, y in zip(ids, labels, strict=True)]}
    )


def _post(url: str, payload: dict) -> dict:
    import json
    import urllib.request

    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
