"""What the flows publish to a real Prefect server: run names, the leaderboard, model and run cards."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("prefect_api")


def latest_artifact(key: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return found[0]


def _flow_run(flow_run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def _artifact_keys(flow_run_id: str) -> list[str | None]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [a.key for a in arts]


@pytest.fixture
def experiment(project, penguins):
    from provenflow.flows.data_run import data_run
    from provenflow.flows.model_run import model_run

    data = data_run(name="penguins", source=str(penguins))["dataset"]
    rf = "sklearn.ensemble.RandomForestClassifier"
    runs = [
        model_run(dataset="penguins@latest", target="sex", estimator=rf, params={"n_estimators": 3, "max_depth": 1}, seed=1),
        model_run(dataset=data["ref"], target="sex", estimator=rf,
                  params={"n_estimators": 60, "class_weight": {"male": 1, "female": 2}}, seed=1),
    ]  # fmt: skip
    return data, runs


def test_leaderboard_lists_every_run_best_first_with_hyperparameters(experiment):
    data, runs = experiment
    table = latest_artifact("leaderboard-penguins-sex")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert len(rows) == 2  # the latest version lists every run, not one row per version
    by_version = {r["version"]: r for r in rows}
    # One "parameters" column with what differs between the runs (seed and test_size do not).
    assert (
        by_version["2"]["parameters"]
        == "RandomForest class_weight.female=2 class_weight.male=1 n_estimators=60"
    )
    assert by_version["1"]["parameters"] == "RandomForest max_depth=1 n_estimators=3"
    assert {r["sample"] for r in rows} == {"all"}
    accuracies = [r["accuracy"] for r in rows]
    assert accuracies == sorted(accuracies, reverse=True) and [r["rank"] for r in rows] == [1, 2]
    assert {r["link"] for r in rows} == {r["prefect_url"] for r in runs}
    assert all(
        r["dataset"] == data["ref"][: len("penguins@") + 6] and r["state"] == "completed" for r in rows
    )


def test_run_names_tell_runs_apart(experiment):
    data, runs = experiment
    short = data["ref"][: len("penguins@") + 6]
    names = [_flow_run(r["run_id"]).name for r in runs]
    # The first asked for penguins@latest: renamed once the version was known.
    assert names == [
        f"penguins-sex · RandomForest max_depth=1 n_estimators=3 · {short}",
        f"penguins-sex · RandomForest class_weight={{male=1,female=2}} n_estimators=60 · {short}",
    ]


def test_promotion_writes_the_model_card_not_the_leaderboard(experiment):
    from provenflow.flows.promote import promote

    _, runs = experiment
    board = latest_artifact("leaderboard-penguins-sex")
    result = promote(model="penguins-sex@2", to="production", auto_approve=True, comment="best of two")
    keys = _artifact_keys(result["run_id"])
    assert "leaderboard-penguins-sex" not in keys and "model-penguins-sex" in keys
    assert latest_artifact("leaderboard-penguins-sex").id == board.id
    card = latest_artifact("model-penguins-sex").data
    assert "`production` → v2" in card and "best of two" in card
    # Lineage to full depth with links: the data run that made the dataset, both model runs, the promotion.
    assert f"({runs[1]['prefect_url']})" in card and f"({result['prefect_url']})" in card
    assert "[data-run run penguins](" in card and "[promote run promote-penguins-sex@2](" in card
    run_card = next(a for a in _run_markdown(result["run_id"]))
    assert "## Lineage" in run_card and f"({runs[1]['prefect_url']})" in run_card


def test_a_version_made_again_is_listed_once_and_its_run_names_it(experiment):
    """A retrain on unchanged data makes the version it made before. Before: the model card's five
    "best" rows were that version again and again, and a sweep's leaderboard said `None` for a run
    whose refit model came out as an existing version (the version was looked up by the run that
    made it first)."""
    from provenflow.flows.model_run import model_run
    from provenflow.flows.promote import promote
    from provenflow.modeling.sweep import trial_record
    from provenflow.workspace import Workspace

    data, _ = experiment
    again = model_run(dataset=data["ref"], target="sex", estimator="sklearn.ensemble.RandomForestClassifier",
                      params={"n_estimators": 60, "class_weight": {"male": 1, "female": 2}}, seed=1)  # fmt: skip
    with Workspace.default().ledger.reader() as session:
        assert trial_record(session, again["run_id"])["model"] == "penguins-sex@2"
    promote(model="penguins-sex@2", to="production", auto_approve=True)
    card = latest_artifact("model-penguins-sex").data
    best = card.split("## Best versions", 1)[1].split("\n## ", 1)[0]
    versions = [
        line.split(" | ")[-2] for line in best.splitlines() if line.startswith("| ") and "---" not in line
    ][1:]
    assert versions == ["2", "1"]


def _run_markdown(flow_run_id: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [a.data for a in arts if a.type == "markdown" and a.key is None]
