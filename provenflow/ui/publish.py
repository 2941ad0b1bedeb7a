"""Publishing what a run shows in the Prefect UI; called by a tracked run when it ends in a flow.

Prefect is reached only through ``provenflow.tracking.prefect_context`` (imported lazily there), so this
module imports without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenflow.tracking import prefect_context
from provenflow.tracking.prefect_context import artifact_key
from provenflow.tracking.report import metrics_row, run_card_markdown
from provenflow.ui.cards import model_card_markdown, run_lineage_markdown, with_picture_on_top
from provenflow.ui.charts import image, line_chart
from provenflow.ui.leaderboard import leaderboard_rows, model_runs, registered_by
from provenflow.ui.names import metrics_key_parts

if TYPE_CHECKING:
    from provenflow.tracking.summary import RunSummary
    from provenflow.workspace import Workspace

MAX_CURVES = 8  # charts per run card; each is a few kB


def metric_curves(metrics: list[tuple[str, float, int | None]]) -> list[str]:
    """One chart per metric logged at two or more steps, as markdown images."""
    series: dict[str, list[tuple[float, float]]] = {}
    for key, value, step in metrics:
        if step is not None:
            series.setdefault(key, []).append((float(step), value))
    curves = [(k, pts) for k, pts in series.items() if len(pts) > 1][:MAX_CURVES]
    return [image(f"{k} over steps", line_chart(k, {k: pts})) for k, pts in curves]


def run_artifacts(
    workspace: Workspace, summary: RunSummary, metrics: list[tuple[str, float, int | None]]
) -> None:
    ui = prefect_context.ui_url()
    models = sorted(
        {
            e["name"].split("@")[0]
            for e in summary.inputs + summary.outputs
            if e["kind"] == "model" and "@" in e["name"]
        }
    )
    with workspace.ledger.reader() as session:
        picture, lineage = run_lineage_markdown(session, summary.id, ui)
        # A model run's own board, or the boards of the models the team's own run registered.
        trained = [summary.name] if summary.kind == "model" else registered_by(session, summary.id)
        boards = {name: leaderboard_rows(model_runs(session, name)) for name in trained}
        cards = {name: model_card_markdown(session, name, ui) for name in models}
    curves = metric_curves(metrics)
    card = with_picture_on_top(run_card_markdown(summary), picture)
    if curves:
        card += "\n## Metric curves\n\n" + "\n\n".join(curves) + "\n"
    description = f"provenflow {summary.kind} run {summary.name}"
    prefect_context.publish_markdown(card + "\n" + lineage, None, description)
    for name, (primary, rows) in boards.items():
        prefect_context.publish_table(
            rows,
            artifact_key("leaderboard", name),
            f"Every run of model {name}, best {primary or 'first'} first",
        )
    # Other kinds (retrain, promotion, …) keep their own history under their own key.
    if summary.kind != "model":
        key = artifact_key(*metrics_key_parts(summary.kind, summary.name))
        prefect_context.publish_table([metrics_row(summary)], key, description)
    for name, markdown in cards.items():
        prefect_context.publish_markdown(markdown, artifact_key("model", name), f"provenflow model {name}")


def model_card(workspace: Workspace, name: str) -> None:
    """Update ``model-<name>`` outside a tracked run's end (e.g. after a drift check)."""
    with workspace.ledger.reader() as session:
        markdown = model_card_markdown(session, name, prefect_context.ui_url())
    prefect_context.publish_markdown(markdown, artifact_key("model", name), f"provenflow model {name}")
