"""The experiment leaderboard: every run of one model, best first, as rows of a Prefect table.

The table artifact ``leaderboard-<model>`` is rewritten at the end of each model run, so its
latest version always lists every run, not one row per artifact version.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from provenflow.ledger import models as m
from provenflow.modeling.registry import LOWER_IS_BETTER
from provenflow.ui.lineage_card import escape
from provenflow.ui.names import model_run_name, short_dataset

# The metric a leaderboard sorts on: the first of these a model's runs recorded.
PRIMARY_METRICS = ("accuracy", "r2", "roc_auc", "f1", "rmse", "mae")
# Counts, not scores: left out of the table's metric columns.
_BOOKKEEPING = frozenset({"train_rows", "test_rows"})


def model_runs(session: Session, name: str) -> list[m.Run]:
    """Every run that trained model NAME (failed ones and unregistered reproductions included)."""
    query = (
        select(m.Run)
        .where(m.Run.kind == "model", m.Run.name == name)
        .order_by(m.Run.started_at)
        .options(selectinload(m.Run.metrics), selectinload(m.Run.io))  # 3 queries, not 2 per run
    )
    return list(session.scalars(query))


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


def leaderboard_rows(runs: list[m.Run]) -> tuple[str | None, list[dict[str, Any]]]:
    """The primary metric and one row per run, best first (failed runs and runs without it last).

    Every row has the same columns, in the same order (a table artifact takes its columns from the
    rows): rank, run, the metrics (primary first), model version, dataset, the flattened
    hyper-parameters, commit, state, link.
    """
    primary = primary_metric(runs)
    entries = [_entry(run) for run in runs]
    param_keys = sorted({k for e in entries for k in e["params"]})
    metric_keys = sorted({k for e in entries for k in e["metrics"]}, key=lambda k: (k != primary, k))
    lower = primary in LOWER_IS_BETTER

    def order(e: dict) -> tuple:
        score = e["metrics"].get(primary)
        if score is None or e["state"] != "completed":
            return (1, 0.0, e["started"])
        return (0, score if lower else -score, e["started"])

    rows = []
    for rank, e in enumerate(sorted(entries, key=order), start=1):
        # The metrics next to the run's name (a wide table scrolls: what ranks must show first), the
        # full flow-run address last (the UI makes it a link; it is long).
        row: dict[str, Any] = {"rank": rank, "run": e["name"]}
        row.update({k: _cell(e["metrics"].get(k)) for k in metric_keys})
        row.update({"model version": e["version"] or "", "dataset": e["dataset"] or ""})
        row.update({f"param {k}": _cell(e["params"].get(k)) for k in param_keys})
        row.update(commit=e["commit"], state=e["state"], link=e["url"] or "")
        rows.append(row)
    return primary, rows


def _entry(run: m.Run) -> dict[str, Any]:
    p = run.parameters or {}
    dataset = next((io.name for io in run.io if io.direction == "input" and io.kind == "dataset"), None)
    model = next((io.name for io in run.io if io.direction == "output" and io.kind == "model"), None)
    hyper = dict(p.get("params") or {})
    hyper.setdefault("seed", p.get("seed"))
    hyper.setdefault("test_size", p.get("test_size"))
    commit = (run.code_commit or "")[:8] + ("+dirty" if run.code_dirty else "")
    return {
        "name": model_run_name(
            run.name, str(p.get("estimator", "?")), p.get("params"), dataset or str(p.get("dataset", "?"))
        ),
        "url": run.prefect_url,
        "version": model.rsplit("@", 1)[1] if model and "@" in model else None,
        "dataset": short_dataset(dataset) if dataset else None,
        "estimator": p.get("estimator"),
        "params": {"estimator": p.get("estimator"), **flatten(hyper)},
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


def leaderboard_markdown(primary: str | None, rows: list[dict[str, Any]], limit: int = 10) -> str:
    """The top rows as a markdown table with links (for the model card)."""
    if not rows:
        return "_no runs yet_\n"
    params = [k for k in rows[0] if k.startswith("param ") and k != "param estimator"]
    head = ["#", "run", "version", "dataset", *(k.removeprefix("param ") for k in params)]
    head += [primary] if primary else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows[:limit]:
        run = f"[{escape(r['run'])}]({r['link']})" if r["link"] else escape(r["run"])
        cells = [
            str(r["rank"]),
            run,
            str(r["model version"]),
            str(r["dataset"]),
            *(escape(str(r[k])) for k in params),
        ]
        cells += [str(r.get(primary, ""))] if primary else []
        lines.append("| " + " | ".join(cells) + " |")
    if len(rows) > limit:
        lines.append(f"\n… and {len(rows) - limit} more in the leaderboard table.")
    return "\n".join(lines) + "\n"
