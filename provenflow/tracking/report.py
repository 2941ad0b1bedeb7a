"""Human-readable renderings of a run: the markdown run card and the metrics-table row."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provenflow.tracking.summary import RunSummary


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def run_card_markdown(s: RunSummary) -> str:
    lines = [
        f"# provenflow {s.kind} run `{s.name}`",
        "",
        f"**State:** {s.state}  ",
        f"**Run id:** `{s.id}`",
        "",
    ]
    if s.error:
        lines += ["## Error", "", f"```\n{s.error}\n```", ""]
    warnings = [w for w in s.warnings if w["level"] == "warning"]
    notices = [w for w in s.warnings if w["level"] != "warning"]
    if warnings:
        lines += ["## Warnings", ""] + [f"- ⚠️ {w['message']}" for w in warnings] + [""]
    if notices:
        lines += ["## Notices", ""] + [f"- {w['message']}" for w in notices] + [""]
    for title, items in (("Inputs", s.inputs), ("Outputs", s.outputs)):
        lines += [f"## {title}", ""]
        if items:
            lines += ["| kind | name | BLAKE3 |", "|---|---|---|"]
            lines += [f"| {i['kind']} | `{i['name']}` | `{i['hash'][:16]}…` |" for i in items]
        else:
            lines.append("_none_")
        lines.append("")
    lines += ["## Parameters", ""]
    if s.parameters:
        lines += ["| name | value |", "|---|---|"] + [
            f"| {k} | `{_fmt(v)}` |" for k, v in s.parameters.items()
        ]
    else:
        lines.append("_none_")
    lines += ["", "## Metrics", ""]
    if s.metrics:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in s.metrics.items()]
    else:
        lines.append("_none_")
    code = s.code
    commit = code.get("commit") or "not in a git repository"
    dirty = {
        True: "yes (uncommitted changes recorded, diff " + str(code.get("diff_hash"))[:12] + ")",
        False: "no",
    }
    lines += [
        "",
        "## Code",
        "",
        f"- commit: `{commit}`",
        f"- uncommitted changes: {dirty.get(code.get('dirty'), 'unknown')}",
    ]
    if code.get("file"):
        lines.append(f"- file: `{code['file']}` (BLAKE3 `{str(code.get('file_hash'))[:12]}`)")
    env = s.environment
    if env:
        lines += [
            "",
            "## Environment",
            "",
            f"- Python {env['python']}",
            f"- {env['packages']} packages, lock hash `{env['hash'][:16]}`",
        ]
    return "\n".join(lines) + "\n"


def metrics_row(s: RunSummary) -> dict:
    """One row of the per-model metrics table; the table artifact's history is the experiment history."""
    row: dict = {"run": s.id, "state": s.state}
    models = [o["name"] for o in s.outputs if o["kind"] == "model"]
    datasets = [i["name"] for i in s.inputs if i["kind"] == "dataset"] + [
        o["name"] for o in s.outputs if o["kind"] == "dataset"
    ]
    if models:
        row["model"] = models[0]
    if datasets:
        row["datasets"] = ", ".join(datasets)
    row.update({f"param.{k}": _fmt(v) for k, v in s.parameters.items() if not isinstance(v, (dict, list))})
    row.update({k: round(v, 6) for k, v in s.metrics.items()})
    return row
