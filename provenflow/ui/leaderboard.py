"""The experiment leaderboard: every run of one model, best first, as rows of a Prefect table.

The table artifact ``leaderboard-<model>`` is rewritten at the end of each model run, so its
latest version always lists every run, not one row per artifact version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from provenflow.ledger import models as m
from provenflow.modeling.registry import LOWER_IS_BETTER
from provenflow.ui.lineage_card import escape
from provenflow.ui.names import short_dataset, short_estimator, value_text

# The metric a leaderboard sorts on: the first of these a model's runs recorded.
PRIMARY_METRICS = ("accuracy", "r2", "roc_auc", "f1", "rmse", "mae")
# Counts, not scores: left out of the table's metric columns (the sample size has a column of its own).
_BOOKKEEPING = frozenset({"train_rows", "test_rows", "unlabelled_rows", "sample_rows"})


def model_runs(session: Session, name: str) -> list[m.Run]:
    """Every run that trained model NAME (failed ones and unregistered reproductions included): the
    model runs of that name, and the team's own runs (a script's, a notebook's, a flow's) that
    registered a version of it with ``log_model``."""
    registered = select(m.ModelVersion.run_id).where(m.ModelVersion.name == name)
    query = (
        select(m.Run)
        .where(or_(and_(m.Run.kind == "model", m.Run.name == name), m.Run.id.in_(registered)))
        .order_by(m.Run.started_at)
        .options(selectinload(m.Run.metrics), selectinload(m.Run.io))  # 3 queries, not 2 per run
    )
    return list(session.scalars(query))


def registered_by(session: Session, run_id: str) -> list[str]:
    """The names of the models run RUN_ID registered versions of."""
    return sorted(set(session.scalars(select(m.ModelVersion.name).where(m.ModelVersion.run_id == run_id))))


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists as text, so each cell is one value."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        elif isinstance(value, (dict, list, tuple)):
            out[f"{prefix}{key}"] = str(value)
        else:
            out[f"{prefix}{key}"] = value
    return out


def primary_metric(runs: Iterable[m.Run]) -> str | None:
    seen = {metric.key for run in runs for metric in run.metrics}
    return next((k for k in PRIMARY_METRICS if k in seen), None)


def differing_parameters(entries: list[dict[str, Any]]) -> list[str]:
    """The hyper-parameter names whose values differ between runs (a name only some runs set counts);
    with a single run, the parameters it was given. The estimator is shown on its own."""
    keys = sorted({k for e in entries for k in e["params"]} - {"estimator"})
    if len(entries) == 1:
        return sorted(entries[0]["given"])
    return [k for k in keys if len({repr(e["params"].get(k, "∅")) for e in entries}) > 1]


def parameters_cell(entry: dict[str, Any], keys: list[str]) -> str:
    """``RandomForest n_estimators=200 max_depth=2``: the estimator, then the parameters that differ."""
    settings = [f"{k}={value_text(entry['params'][k])}" for k in keys if k in entry["params"]]
    return " ".join([short_estimator(str(entry["estimator"] or "?")), *settings])


def leaderboard_rows(runs: list[m.Run]) -> tuple[str | None, list[dict[str, Any]]]:
    """The primary metric and one row per run, best first (failed runs and runs without it last).

    Every row has the same columns, in the same order (a table artifact takes its columns from the
    rows), narrow enough for a 1600 px screen: rank, the metrics (primary first), one compact
    ``parameters`` column (the estimator and the hyper-parameters that differ between runs; the run
    card keeps them all), the sample (``all`` when every row was used), version, dataset, commit, state,
    and the flow run's address last. Before, one column per hyper-parameter and the long run name
    pushed everything after the metrics off-screen.
    """
    primary = primary_metric(runs)
    entries = [_entry(run) for run in runs]
    keys = differing_parameters(entries)
    metric_keys = sorted({k for e in entries for k in e["metrics"]}, key=lambda k: (k != primary, k))
    lower = primary in LOWER_IS_BETTER

    def order(e: dict) -> tuple:
        score = e["metrics"].get(primary)
        if score is None or e["state"] != "completed":
            return (1, 0.0, e["started"])
        return (0, score if lower else -score, e["started"])

    rows = []
    for rank, e in enumerate(sorted(entries, key=order), start=1):
        row: dict[str, Any] = {"rank": rank}
        row.update({k: _cell(e["metrics"].get(k)) for k in metric_keys})
        row["parameters"] = parameters_cell(e, keys)
        row["sample"] = e["sample"]
        row.update({"version": e["version"] or "", "dataset": e["dataset"] or ""})
        row.update(commit=e["commit"], state=e["state"], link=e["url"] or "")
        rows.append(row)
    return primary, rows


def _entry(run: m.Run) -> dict[str, Any]:
    p = run.parameters or {}
    dataset = next((io.name for io in run.io if io.direction == "input" and io.kind == "dataset"), None)
    output = next((io for io in run.io if io.direction == "output" and io.kind == "model"), None)
    model = output.name if output else None
    if run.kind != "model":  # the team's own run: its parameters are pf.start's, its estimator the model's
        estimator = output.model_version.estimator if output and output.model_version else None
        p = {"params": p, "estimator": estimator}
    hyper = dict(p.get("params") or {})
    hyper.setdefault("seed", p.get("seed"))
    hyper.setdefault("test_size", p.get("test_size"))
    commit = (run.code_commit or "")[:8] + ("+dirty" if run.code_dirty else "")
    sampled = next((k.value for k in run.metrics if k.key == "sample_rows"), None) or p.get("sample")
    return {
        "url": run.prefect_url,
        "version": model.rsplit("@", 1)[1] if model and "@" in model else None,
        "dataset": short_dataset(dataset) if dataset else None,
        "estimator": p.get("estimator"),
        "params": {"estimator": p.get("estimator"), **flatten(hyper)},
        "given": list(flatten(dict(p.get("params") or {}))),
        # 0 or nothing: every row (a 0 in the table read as "no rows")
        "sample": f"{int(sampled):,}" if sampled else "all",
        "metrics": {k.key: k.value for k in run.metrics if k.key not in _BOOKKEEPING},
        "commit": commit or "-",
        "state": run.state,
        "started": run.started_at.isoformat() if run.started_at else "",
    }


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, 6)
    return value


def best_per_version(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each registered version once, at its best run's place: a retrain on unchanged data, or a
    reproduction, makes a run of a version the card already lists (the same version filled the
    model card's five rows before)."""
    seen: set[str] = set()
    kept = []
    for row in rows:
        if row["version"] and row["version"] not in seen:
            seen.add(row["version"])
            kept.append(row)
    return kept


def leaderboard_markdown(primary: str | None, rows: list[dict[str, Any]], limit: int = 10) -> str:
    """The top rows as a markdown table for the model card: rank, the metrics (primary first, so a
    narrow screen keeps them), the parameters linked to the run, version, dataset."""
    if not rows:
        return "_no runs yet_\n"
    columns = list(rows[0])
    metrics = columns[1 : columns.index("parameters")][:3]
    head = ["#", *metrics, "parameters", "version", "dataset"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows[:limit]:
        shown = escape(r["parameters"])
        run = f"[{shown}]({r['link']})" if r["link"] else shown
        cells = [str(r["rank"]), *(str(r[k]) for k in metrics), run, str(r["version"]), str(r["dataset"])]
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more in the leaderboard table.")
    return "\n".join(lines) + "\n"
