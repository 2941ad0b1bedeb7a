"""The end-to-end demo on the bundled Palmer penguins data (CC0, from the palmerpenguins package):
a data run, three model runs with different estimators and parameters, lineage and a comparison;
then the best model promoted, deployed (a local server process), sent production traffic, checked
for drift before and after the traffic shifts, and retrained, gated, promoted and redeployed. All
recorded in the ledger and visible in the Prefect UI."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from provenflow import server

DATA = Path(__file__).parent / "penguins.csv"
EXPERIMENTS = [
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 10, "max_depth": 2}),
    ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 200, "min_samples_leaf": 2}),
    ("sklearn.linear_model.LogisticRegression", {"C": 1.0, "max_iter": 500}),
]


def main() -> None:
    console = Console(soft_wrap=True)
    with console.status("starting the Prefect server…"):
        status = server.start()
    console.print(f"[bold]Prefect UI:[/bold] {status.ui_url}")
    notice = server.connect(quiet=True)
    if notice:
        console.print(notice)

    from flows.data_run import data_run
    from flows.model_run import model_run
    from provenflow import catalog
    from provenflow.cli import output
    from provenflow.lineage import lineage
    from provenflow.workspace import Workspace

    console.rule("1. data run: validate and version the penguins data")
    data = data_run(name="penguins", source=str(DATA))
    ref = data["dataset"]["ref"]
    console.print(
        f"dataset {ref}: {data['dataset']['rows']} rows, {data['validation']['successful']}/{data['validation']['evaluated']} expectations passed"
    )

    console.rule("2. three model runs: predict each penguin's sex")
    results = []
    for estimator, params in EXPERIMENTS:
        result = model_run(dataset=ref, target="sex", estimator=estimator, params=params, seed=7)
        model = f"{result['model']['name']}@{result['model']['version']}"
        console.print(
            f"{model}  {estimator.rsplit('.', 1)[1]} {params}  "
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
    heads = [f"{r['name']} {r['id'][:8]}" for r in compared["runs"]]
    rows = [[f"param {k}", *v] for k, v in compared["params"].items() if len(set(map(str, v))) > 1]
    rows += [[f"metric {k}", *v] for k, v in compared["metrics"].items()]
    output.table("runs side by side (parameters that differ, and metrics)", ["", *heads], rows)

    production = _production_story(console, best_ref)
    console.print(
        f"\nOpen {status.ui_url} to see the flow runs, each with its run card, and the "
        f"'metrics-{best['model']['name']}' table artifact (its history is the experiment history).\n"
        "Try: provenflow runs list · provenflow models show penguins-sex · provenflow lineage " + production
    )


def _production_story(console: Console, best_ref: str) -> str:
    """Promote, deploy (a local server process), send production traffic, watch drift, retrain."""
    import time
    from datetime import UTC, datetime

    from flows.deploy import deploy
    from flows.drift_monitor import drift_monitor
    from flows.promote import promote
    from flows.retrain import retrain
    from provenflow.cli import output
    from provenflow.datasets import read_table
    from provenflow.settings import get_settings

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

    shifted_at = datetime.now(UTC)
    shifted = features.sample(n=600, replace=True, random_state=2)
    shifted["body_mass_g"] += 900  # heavier penguins: a shift in one feature
    _send(endpoint, shifted)
    time.sleep(2)
    console.rule("7. drift check on shifted traffic")
    report = drift_monitor(model="penguins-sex@production", since=shifted_at)
    output.drift(report)

    console.rule("8. retrain on the newest data, gate, promote and redeploy")
    newest = get_settings().home_dir / "demo" / "penguins-newest.csv"
    newest.parent.mkdir(parents=True, exist_ok=True)
    fresh = read_table(str(DATA))
    fresh["body_mass_g"] += 900
    fresh.to_csv(newest, index=False)
    console.print(
        "(in production the drift event starts the retrain deployment through its trigger in prefect.yaml)"
    )
    retrained = retrain(
        model="penguins-sex@production", source=str(newest), drift_report=str(report["report_id"] or "")
    )
    console.print(
        f"challenger {retrained['challenger']} trained on {retrained['dataset']}: {retrained['promotion']}"
        + (f"; now serving at {retrained['deployment']['endpoint']}" if retrained["deployment"] else "")
    )
    return retrained["challenger"]


def _send(endpoint: str, frame) -> None:
    """Production-like traffic: batches of 100 rows to /predict."""
    import json
    import urllib.request

    for start in range(0, len(frame), 100):
        records = json.loads(frame.iloc[start : start + 100].to_json(orient="records"))
        body = json.dumps({"records": records}).encode()
        request = urllib.request.Request(
            f"{endpoint}/predict", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
