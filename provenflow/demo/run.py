"""The end-to-end demo on the bundled Palmer penguins data (CC0, from the palmerpenguins package):
a data run, three model runs with different estimators and parameters, then lineage and a
comparison, all recorded in the ledger and visible in the Prefect UI."""

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
    console.print(
        f"\nOpen {status.ui_url} to see the flow runs, each with its run card, and the "
        f"'metrics-{best['model']['name']}' table artifact (its history is the experiment history).\n"
        "Try: provenflow runs list · provenflow models list · provenflow lineage " + best_ref
    )
