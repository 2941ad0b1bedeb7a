"""The model card (``model-<name>``) and the lineage section of run cards, read from the ledger,
with every node linked: runs to their Prefect flow run, model versions to their model card, drift
reports to the report server."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.ledger import models as m
from provenflow.modeling import registry
from provenflow.monitoring.reports import report_url
from provenflow.tracking.lineage import lineage
from provenflow.tracking.prefect_context import artifact_key
from provenflow.ui.leaderboard import best_per_version, leaderboard_markdown, leaderboard_rows, model_runs
from provenflow.ui.lineage_card import Linker, lineage_markdown, lineage_picture


def artifact_url(ui_url: str | None, key: str) -> str | None:
    return f"{ui_url.rstrip('/')}/artifacts/key/{key}" if ui_url else None


def linker(session: Session, ui_url: str | None) -> Linker:
    reports = set(
        session.scalars(select(m.DriftReport.report_hash).where(m.DriftReport.report_hash.is_not(None)))
    )

    def link(node: dict) -> str | None:
        if node["kind"] == "run":
            return node.get("prefect_url")
        if node["kind"] == "model" and "@" in str(node.get("ref")):
            return artifact_url(ui_url, artifact_key("model", node["ref"].split("@")[0]))
        if node.get("hash") in reports:
            return report_url(node["hash"])
        return None

    return link


def run_lineage_markdown(session: Session, run_id: str, ui_url: str | None) -> tuple[str, str]:
    """The run's lineage picture (for the card's top) and its linked lists (for the card's end)."""
    graph = lineage(session, run_id)
    return lineage_picture(graph), lineage_markdown(graph, linker(session, ui_url), picture=False)


def with_picture_on_top(card: str, picture: str) -> str:
    """The picture after the card's opening block (title, state, id), so it shows without scrolling."""
    head, sep, rest = card.partition("\n\n")
    second, sep2, rest2 = rest.partition("\n\n")
    if not sep2:
        return f"{head}\n\n{picture}\n\n{rest}"
    return f"{head}{sep}{second}\n\n{picture}\n\n{rest2}"


def model_card_markdown(session: Session, name: str, ui_url: str | None) -> str:
    """Aliases, the best versions, the alias history with who decided, releases, deployments, the last
    drift check, and the lineage of the version that holds ``production`` (else the newest)."""
    link = linker(session, ui_url)
    versions = list(
        session.scalars(
            select(m.ModelVersion).where(m.ModelVersion.name == name).order_by(m.ModelVersion.version)
        )
    )
    out = [f"# Model `{name}`", ""]
    if not versions:
        return "\n".join([*out, "_no versions yet_", ""])
    aliases = registry.aliases(session, name)
    out += ["**Aliases:** " + (", ".join(f"`{a}` → v{v}" for a, v in aliases.items()) or "_none_"), ""]
    focus = next((v for v in versions if v.version == aliases.get("production")), versions[-1])
    graph = lineage(session, focus.ref)
    out += [lineage_picture(graph), ""]  # near the top: a 1600×1000 screen shows it without scrolling
    board = artifact_url(ui_url, artifact_key("leaderboard", name))
    primary, rows = leaderboard_rows(model_runs(session, name))
    out += [
        "## Best versions" + (f" ([every run]({board}))" if board else ""),
        "",
        leaderboard_markdown(primary, best_per_version(rows), 5),
    ]
    history = registry.alias_history(session, name)[-10:]
    if history:
        out += [
            "## Alias history",
            "",
            "| when | alias | action | version | by | why |",
            "|---|---|---|---|---|---|",
        ]
        for e in reversed(history):
            when = e["at"][:16].replace("T", " ")
            out.append(
                f"| {when} | {e['alias']} | {e['action']} | v{e['to_version']} | {e['actor'] or ''} | {(e['comment'] or '').replace('|', '/')} |"
            )
        out.append("")
    ids = [v.id for v in versions]
    releases = session.scalars(
        select(m.Release).where(m.Release.model_version_id.in_(ids)).order_by(m.Release.id.desc()).limit(5)
    ).all()
    if releases:
        out += (
            ["## Releases", ""]
            + [f"- v{r.model_version.version}: `{r.reference}` ({r.runtime or '?'})" for r in releases]
            + [""]
        )
    deployed = session.scalars(
        select(m.Deployment)
        .where(m.Deployment.model_version_id.in_(ids))
        .order_by(m.Deployment.id.desc())
        .limit(5)
    ).all()
    if deployed:
        out += ["## Deployments", ""]
        out += [
            f"- v{d.model_version.version} on {d.target} `{d.name}`: {d.state}"
            + (f" at {d.endpoint}" if d.endpoint else "")
            for d in deployed
        ]
        out.append("")
    drift = session.scalars(
        select(m.DriftReport)
        .where(m.DriftReport.model_version_id.in_(ids))
        .order_by(m.DriftReport.id.desc())
        .limit(1)
    ).first()
    if drift:
        report = f" — [Evidently report]({report_url(drift.report_hash)})" if drift.report_hash else ""
        out += [
            "## Last drift check",
            "",
            f"v{drift.model_version.version}, {drift.created_at:%Y-%m-%d %H:%M} UTC: **{drift.status}** over {drift.rows} rows{report}",
            "",
        ]
    out += [lineage_markdown(graph, link, picture=False)]  # "This: model NAME@V" says whose
    return "\n".join(out)
