"""Printing for the CLI: JSON for scripts, rich tables and trees for people."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def headline_metrics(metrics: dict, count: int = 3) -> list[tuple[str, Any]]:
    """The first COUNT metrics that say how good a run is; row counts only when there is nothing else."""
    scores = [(k, v) for k, v in metrics.items() if not k.endswith("_rows")]
    return (scores or list(metrics.items()))[:count]


def table(title: str, columns: list[str], rows: list[list[Any]], keep_whole: tuple[str, ...] = ()) -> None:
    """KEEP_WHOLE columns (short ones: ids, states, times) are never wrapped; the others fold."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column, overflow="fold", no_wrap=column in keep_whole)
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    console.print(t)


def warnings(items: list[dict]) -> None:
    """A run's warnings (yellow) and notices, on stderr: what the user must not miss."""
    from rich.markup import escape

    for item in items:
        label = "[yellow]Warning:[/yellow]" if item["level"] == "warning" else "[dim]Note:[/dim]"
        err_console.print(f"{label} {escape(item['message'])}", highlight=False, soft_wrap=True)


def run_detail(run: dict) -> None:
    console.print(
        f"[bold]{run['kind']} run[/bold] {run['name']}  [dim]{run['id']}[/dim]  state: {run['state']}"
    )
    if run.get("error"):
        console.print(f"[red]error:[/red] {run['error']}")
    console.print(
        f"flow: {run['flow']}   started: {run['started_at']}   ended: {run['ended_at']}   by {run.get('user')}@{run.get('host')}"
    )
    if run.get("prefect_url"):
        console.print(f"Prefect: {run['prefect_url']}", highlight=False, soft_wrap=True)  # a link stays whole
    code = run["code"]
    dirty = {True: f"dirty (diff {str(code['diff_hash'])[:12]})", False: "clean", None: "unknown"}[
        code["dirty"]
    ]
    console.print(
        f"code: {code['commit'] or 'no git commit'} {dirty}"
        + (f"  file {code['file']}" if code.get("file") else "")
    )
    env = run["environment"]
    console.print(
        f"environment: Python {env['python']}, {len(env['packages'])} packages, hash {str(env['hash'])[:16]}"
    )
    warnings(run.get("warnings") or [])
    table("inputs", ["kind", "name", "hash"], [[i["kind"], i["name"], i["hash"][:16]] for i in run["inputs"]])
    table(
        "outputs", ["kind", "name", "hash"], [[o["kind"], o["name"], o["hash"][:16]] for o in run["outputs"]]
    )
    table("parameters", ["name", "value"], [[k, v] for k, v in run["parameters"].items()])
    table("metrics", ["name", "value"], [[k, v] for k, v in run["metrics"].items()])


def _run_label(node: dict) -> str:
    code = node["code"]
    commit = (code["commit"] or "no-git")[:10] + ("+dirty" if code["dirty"] else "")
    metrics = ", ".join(f"{k}={fmt(v)}" for k, v in headline_metrics(node["metrics"], 4))
    verdicts = ", ".join(f"{r['verdict']} ({r['rerun_id'][:8]})" for r in node.get("reproductions", []))
    if verdicts:
        metrics += f"  [magenta]reproduced: {verdicts}[/magenta]"
    state = "" if node.get("state", "completed") == "completed" else f" [red]{node['state']}[/red]"
    return f"[cyan]run[/cyan]{state} {node['name']} [dim]{node['id'][:8]}[/dim] ({node['flow']}, code {commit}, env {str(node['environment']['hash'])[:8]}){'  ' + metrics if metrics else ''}"


def _version_label(node: dict) -> str:
    damage = f" [bold red]DAMAGED: object {node['damage']}[/bold red]" if node.get("damage") else ""
    return f"[green]{node['kind']}[/green] {node['ref']} [dim]{node['hash'][:12]}[/dim]{damage}"


def damage_note(what: str, damage: str | None) -> None:
    """One line on stderr for a damaged object shown by a command, with what repairs it."""
    if damage:
        err_console.print(
            f"[bold red]Damaged:[/bold red] the stored object of {what} is {damage}. "
            "Re-run the run that produced it (the same data-run repairs a dataset), "
            "or restore it from a backup; `provenflow verify` lists every damaged object.",
            highlight=False,
        )


def gc_report(report: dict, crashed: list[dict]) -> None:
    verb = "would remove" if report["dry_run"] else "removed"
    for run in crashed:
        console.print(f"marked crashed: run {run['id'][:8]} {run['name']} ({run['flow']})", highlight=False)
    for g in report["removed"]:
        console.print(
            f"{verb} {g['kind']:6} {g['size']:>14,} B  {g['path']}", highlight=False, soft_wrap=True
        )
    young = f"; {report['kept_young']} younger than the grace period kept" if report["kept_young"] else ""
    console.print(
        f"{verb} {len(report['removed'])} files, {report['bytes_freed']:,} bytes{young}", highlight=False
    )


def verify_report(report: dict) -> None:
    for d in report["damaged"]:
        users = "; ".join(d["used_by"]) or "no version (a run's file)"
        console.print(
            f"[bold red]{d['problem']}[/bold red] {d['hash']}  {d['path']}\n   used by: {users}",
            soft_wrap=True,
        )
    state = f"[bold red]{len(report['damaged'])} damaged[/bold red]" if report["damaged"] else "all intact"
    console.print(f"checked {report['checked']} objects, {report['bytes']:,} bytes: {state}")


SHOWN_FILES = 3  # a folder's data run reads one file per partition: 124 of them drowned the tree


def _add_up(tree: Tree, nodes: list[dict]) -> None:
    files = [n for n in nodes if n["kind"] in ("file", "part")]
    hidden = {id(n) for n in files[SHOWN_FILES:]}
    for node in nodes:
        if id(node) in hidden:
            continue
        if node["kind"] == "run":
            branch = tree.add(_run_label(node))
            _add_up(branch, node.get("inputs", []))
        else:
            branch = tree.add(_version_label(node))
            _add_up(branch, node.get("produced_by", []))
    if hidden:
        tree.add(f"[dim]… and {len(hidden)} more file{'s' if len(hidden) > 1 else ''} (--json lists them)[/dim]")


def _add_down(tree: Tree, nodes: list[dict]) -> None:
    for node in nodes:
        if node["kind"] == "run":
            branch = tree.add(_run_label(node))
            _add_down(branch, node.get("outputs", []))
        else:
            branch = tree.add(_version_label(node))
            _add_down(branch, node.get("used_by", []))


def lineage_tree(graph: dict) -> None:
    root = graph["node"]
    label = _run_label(root) if graph["kind"] == "run" else _version_label(root)
    # A heading only over a tree with something in it (an empty "downstream of …" read as a cut-off).
    if graph["upstream"]:
        up = Tree(f"[bold]upstream of[/bold] {label}")
        _add_up(up, graph["upstream"])
        console.print(up)
    if graph["downstream"]:
        down = Tree(f"[bold]downstream of[/bold] {label}")
        _add_down(down, graph["downstream"])
        console.print(down)
    if not graph["upstream"] and not graph["downstream"]:
        console.print(f"{label}: no recorded run wrote or used it", highlight=False)
    for release in root.get("releases", []):
        console.print(f"  [blue]image[/blue] {release['image']} ({release['runtime']})", highlight=False)
    for d in root.get("deployments", []):
        where = f"image {d['image']}" if d["image"] else "bundle, no image"
        console.print(
            f"  [blue]deployed[/blue] {d['target']} {d['name']} at {d['endpoint']} ({d['state']}, {d['at'][:19]}, {where})",
            highlight=False,
        )


def reproduction(result: dict) -> None:
    colour = {"identical": "green", "equivalent": "yellow", "different": "red"}[result["verdict"]]
    console.print(
        f"[bold {colour}]{result['verdict']}[/bold {colour}]  run {result['original']} reproduced as {result['reproduction']}"
    )
    entry = result.get("entry")
    if entry:
        console.print(f"re-ran {entry['kind']} {entry['path']}", highlight=False)
        for name, hashes in (result.get("outputs") or {}).items():
            same = "same" if hashes["original"] == hashes["reproduced"] else "DIFFERS"
            console.print(
                f"output {name}: {same}  {str(hashes['original'])[:12]} → {str(hashes['reproduced'])[:12]}",
                highlight=False,
            )
    else:
        hashes = result["model_hash"] or result["dataset_hash"]
        console.print(
            f"output hash: {hashes['original']}\n   reproduced: {hashes['reproduced']}", highlight=False
        )
    code = result["code"]
    console.print(
        f"code: {code['source']} ({'same as recorded' if code['same'] else 'differs from recorded'})"
    )
    if result["causes"]:
        console.print(f"likely cause: {', '.join(result['causes'])}")
    for note in result["notes"]:
        console.print(f"note: {note}")
    table("metrics", ["metric", "original", "reproduced", "equal"],
          [[k, v["original"], v["reproduced"], "yes" if v["equal"] else "NO"] for k, v in result["metrics"].items()])  # fmt: skip
    if result["env_diff"]:
        table("environment changes", ["package", "change", "recorded", "now"],
              [[d["package"], d["change"], d["recorded"], d["current"]] for d in result["env_diff"]])  # fmt: skip


def model_detail(data: dict) -> None:
    console.print(
        f"[bold]{data['ref']}[/bold]  {data['hash']}\n{data['estimator']} ({data['task']}), {data['size']} bytes, "
        f"format {data['format']}\ntraining run {data['run_id']}\n"
        + (
            f"sealed by key {data['sealed_by_key']}"
            if data.get("sealed_by_key")
            else f"not sealed: it will not load until checked and sealed (provenflow models sign {data['ref']})"
        ),
        highlight=False,
    )
    table("metrics", ["metric", "value"], [[k, v] for k, v in (data["metrics"] or {}).items()])
    table("hyper-parameters", ["name", "value"], [[k, v] for k, v in (data["params"] or {}).items()])
    table(
        "input signature",
        ["column", "dtype", "kind"],
        [[c["name"], c["dtype"], c["kind"]] for c in data["signature"]["inputs"]],
    )
    left_out = data["signature"].get("left_out") or {}
    if left_out:
        table("columns left out", ["column", "why"], [[name, why] for name, why in left_out.items()])


def model_overview(data: dict) -> None:
    aliases = ", ".join(f"{a} → {v}" for a, v in data["aliases"].items()) or "none"
    console.print(f"[bold]{data['name']}[/bold]  aliases: {aliases}", highlight=False)
    table("versions", ["version", "estimator", "metrics", "created"],
          [[v["version"], v["estimator"], ", ".join(f"{k}={fmt(x)}" for k, x in (v["metrics"] or {}).items()), v["created_at"][:19]]
           for v in data["versions"]])  # fmt: skip
    table("alias history", ["when", "alias", "action", "from", "to", "by", "why"],
          [[h["at"][:19], h["alias"], h["action"], h["from_version"], h["to_version"], h["actor"], h["comment"]]
           for h in data["history"]])  # fmt: skip


def promotion(result: dict) -> None:
    colour = "green" if result["decision"] == "approved" else "red"
    console.print(
        f"[bold {colour}]{result['decision']}[/bold {colour}]: {result['model']} → {result['alias']} "
        f"(by {result['by']}{': ' + result['comment'] if result['comment'] else ''})",
        highlight=False,
    )
    gate_table(result["gate"])


def gate_table(gate: dict | None) -> None:
    if gate and gate["holder"]:
        from provenflow.modeling.registry import rows_scored

        counted = rows_scored(gate.get("scored_rows"), gate.get("left_out", 0))
        table(f"gate against {gate['holder']} on held-out rows of {gate['dataset']}{counted}",
              ["metric", "candidate", "holder", "change", "allowed worse by", "ok"],
              [[r["metric"], r["candidate"], r["holder"], f"{r['change']:+.4f}", r["tolerance"], "yes" if r["ok"] else "NO"]
               for r in gate["rows"]])  # fmt: skip


def retrained(result: dict) -> None:
    colour = {"approved": "green", "unchanged": "yellow"}.get(result["promotion"], "red")
    how = (
        f"its own flow run {result['training_flow_run']}" if result["training_flow_run"]
        else f"{result['training_entry']['kind']} {result['training_entry']['path']}" if result["training_entry"]
        else f"model-run on {result['dataset']}"
    )  # fmt: skip
    console.print(
        f"{result['champion']} → {result['challenger']} (trained by {how}): "
        f"[bold {colour}]{result['promotion']}[/bold {colour}]",
        highlight=False,
    )
    for ref in result.get("datasets") or []:
        console.print(f"data run first: {ref}", highlight=False)
    if result["promotion"] == "unchanged":
        console.print("the same code on the same data gave the champion's own model: nothing promoted or redeployed")
    elif result["promotion"] != "approved":
        console.print(f"not promoted: {result.get('why') or result['promotion']}", highlight=False)
        gate_table(result.get("gate"))
    if result["deployment"]:
        console.print(f"redeployed to {result['deployment']['target']}: {result['deployment']['endpoint']}", highlight=False)


def drift(result: dict) -> None:
    colour = {"drift": "red", "no drift": "green"}.get(result["verdict"], "yellow")
    console.print(
        f"[bold {colour}]{result['verdict']}[/bold {colour}]  {result['model']}: {result['rows']} rows since {result['window']['since'][:19]}",
        highlight=False,
    )
    if result["reason"]:
        console.print(result["reason"])
    rows = [
        [n, f["test"], f["score"], f["threshold"], "DRIFT" if f["drift"] else "ok"]
        for n, f in result["features"].items()
    ]
    if result["prediction"]:
        p = result["prediction"]
        rows.append(["(prediction)", p["test"], p["score"], p["threshold"], "DRIFT" if p["drift"] else "ok"])
    if rows:
        table("features", ["feature", "deciding test", "score", "threshold", "verdict"], rows)
    if result["skipped_segments"]:
        console.print(
            f"[yellow]skipped unreadable segments:[/yellow] {', '.join(result['skipped_segments'])}"
        )
    if result.get("not_compared"):
        console.print(f"not compared (dates move on by nature): {', '.join(result['not_compared'])}")
    if result.get("prediction_compared") is False and result["rows"]:
        console.print(
            "the prediction is not compared: this version was recorded without its predictions on held-out "
            "rows (trained before provenflow kept them, or log_model without eval=)",
            highlight=False,
        )
    if result["report"]:
        console.print(
            f"report: {result.get('report_url') or result['report']}", highlight=False, soft_wrap=True
        )
    automations_started(result, "drift")


def automations_started(result: dict, what: str) -> None:
    """Say that the check's event starts Prefect automations (a retrain that may promote and
    redeploy): run by hand, the check would otherwise change production without a word."""
    if result.get("automations"):
        names = ", ".join(f"'{n}'" for n in result["automations"])
        console.print(
            f"[yellow]the {what} event starts {names}[/yellow]: a retrain flow run, in the Prefect UI "
            "(it may promote and redeploy)",
            highlight=False,
        )


def quality(result: dict) -> None:
    colour = {"degraded": "red", "ok": "green"}.get(result["verdict"], "yellow")
    console.print(f"[bold {colour}]{result['verdict']}[/bold {colour}]  {result['model']}: {result['reason']}",
                  highlight=False)  # fmt: skip
    metric, estimates = result["metric"], result.get("estimates")
    head = ["window (UTC)", "predictions", "labelled", f"realized {metric} (CI)"]
    if estimates is not None:
        head.append(f"estimated {metric}")
    rows = []
    for i in reversed(range(len(result["windows"]))):  # newest first; windows without traffic left out
        w = result["windows"][i]
        if not w["predictions"] and not w["labelled"]:
            continue
        value = w["metrics"].get(metric)
        shown = "—"
        if value:
            shown = f"{value['value']:.4f}" + (
                f" ({value['low']:.4f}–{value['high']:.4f})" if value["low"] is not None else ""
            )
        # start → end: the start alone of a 24 h window read as yesterday's date, a wrong one
        span = f"{w['start'][5:16].replace('T', ' ')} → {w['end'][5:16].replace('T', ' ')}"
        row = [span, w["predictions"], w["labelled"], shown]
        if estimates is not None:
            row.append((estimates[i] or {}).get(metric))
        rows.append(row)
    table(f"realized {metric} (training {result['training']:.4f})", head, rows)
    automations_started(result, "decay")


def performance(result: dict) -> None:
    console.print(
        f"{result['model']}: {result['rows']} logged rows since {(result['since'] or '')[:19]}",
        highlight=False,
    )
    estimated = result["estimated"]
    if estimated is None:
        console.print(
            f"estimated performance: [yellow]not available[/yellow]: {result['reason']}", highlight=False
        )
        return
    rows = [
        [
            name,
            fmt(estimated[name]),
            fmt(estimated[f"{name}_label_shift"]),
            f"{fmt(estimated[f'{name}_low'])} – {fmt(estimated[f'{name}_high'])}",
        ]
        for name in ("accuracy", "f1", "roc_auc")
        if name in estimated
    ]
    table(
        "estimated performance (before labels)",
        ["metric", "estimate", "if the classes' mix moved", "band (low – high)"],
        rows,
    )
