"""The drift artifact: verdict, a one-click link to the Evidently report, and per-feature
histograms of the training reference against the current window."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from provenflow.ledger import models as m
from provenflow.monitoring.drift.reference import NumericReference, column_reference
from provenflow.ui.charts import histogram, image

MAX_CATEGORIES = 12  # bars per categorical histogram; the rest count as "(other)"


def feature_histogram(name: str, profile: Mapping, values: pd.Series) -> str:
    """One feature's reference (from the stored profile's bins or category counts) vs. current."""
    ref = column_reference(name, profile)
    if isinstance(ref, NumericReference):
        edges = ref.edges
        current = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64")
        current = current[np.isfinite(current)]
        if len(edges) < 2:  # a constant column: one bin
            labels, reference, counts = [f"{edges[0]:.4g}"], [ref.count], [len(current)]
        else:
            counts = np.histogram(np.clip(current, edges[0], edges[-1]), bins=edges)[0].tolist()
            labels = [f"{edges[i]:.3g}" for i in range(len(edges) - 1)]
            reference = ref.counts.tolist()
        return image(f"{name} histogram", histogram(name, labels, reference, counts))
    top = list(ref.frequencies)[:MAX_CATEGORIES]
    seen = values.dropna().astype(str).value_counts()
    labels = [*top, "(other)"]
    reference = [ref.frequencies[c] for c in top] + [
        ref.other + sum(list(ref.frequencies.values())[MAX_CATEGORIES:])
    ]
    current = [int(seen.get(c, 0)) for c in top] + [int(seen.drop(labels=top, errors="ignore").sum())]
    return image(f"{name} histogram", histogram(name, labels, reference, current))


def drift_markdown(
    model: str,
    verdict: str,
    rows: int,
    since: datetime,
    training_dataset: str,
    drifted: Iterable[str],
    reason: str | None,
    report_url: str | None,
    pictures: list[str],
    columns: list[dict[str, Any]] | None = None,
) -> str:
    """The drift artifact: verdict, what drifted (``(prediction)`` included, as the CLI lists it), one
    row per column with the deciding test, score and threshold, the report link, the pictures."""
    drifted = list(drifted)
    lines = [
        f"# Drift of `{model}`: **{verdict}**",
        "",
        f"{rows} rows since {since:%Y-%m-%d %H:%M} UTC against the profile of `{training_dataset}`.",
        "",
    ]
    if drifted:
        lines += [f"Drifted: {', '.join(drifted)}", ""]
    if columns:
        lines += ["| column | test | score | threshold | verdict |", "|---|---|---|---|---|"]
        for c in columns:
            score = "" if c["score"] is None else f"{c['score']:.4g}"
            verdict = "**DRIFT**" if c["drift"] else "ok"
            lines.append(
                f"| {c['feature']} | {c['test'] or ''} | {score} | {c['threshold'] or ''} | {verdict} |"
            )
        lines.append("")
    if report_url:
        lines += [f"**[Open the Evidently drift report]({report_url})**", ""]
    elif reason:
        lines += [reason, ""]
    if pictures:
        lines += ["## Reference (training) vs. current window", "", *(p + "\n" for p in pictures)]
    return "\n".join(lines)


def drift_history_rows(session: Session, name: str, limit: int = 48) -> list[dict[str, Any]]:
    """Every recent drift check of model NAME as one table over time, newest first: when, version,
    rows, verdict, what drifted, and each column's deciding score (one column per feature). Before, each
    check wrote its own per-feature table and the key's page showed one table per check."""
    reports = session.scalars(
        select(m.DriftReport)
        .join(m.ModelVersion, m.DriftReport.model_version_id == m.ModelVersion.id)
        .where(m.ModelVersion.name == name)
        .order_by(m.DriftReport.created_at.desc(), m.DriftReport.id.desc())
        .limit(limit)
    ).all()
    # A score column only for the features that drifted in one of these checks: the table stays within
    # a 1600 px screen; the per-column scores of one check are in its drift artifact.
    names = list(dict.fromkeys(f for r in reports for f, v in (r.features or {}).items() if v.get("drift")))
    rows = []
    for r in reports:
        features = r.features or {}
        prediction = (r.details or {}).get("prediction") or {}
        drifted = [f for f, v in features.items() if v.get("drift")]
        drifted += ["(prediction)"] if prediction.get("drift") else []
        row: dict[str, Any] = {
            "checked": f"{r.created_at:%Y-%m-%d %H:%M}",
            "version": r.model_version.version,
            "rows": r.rows,
            "verdict": r.status,
            "drifted": ", ".join(drifted),
        }
        for f in names:
            score = (features.get(f) or {}).get("score")
            row[f] = "" if score is None else round(score, 4)
        if any(((x.details or {}).get("prediction") or {}).get("drift") for x in reports):
            row["(prediction)"] = "" if prediction.get("score") is None else round(prediction["score"], 4)
        rows.append(row)
    return rows
