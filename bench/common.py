"""What both benchmarks share: paths, the peers' virtualenv, running a timed worker, machine facts.

Each side of a comparison runs as a worker script (``bench/workers/``) in a subprocess, in a
fresh scratch folder, with its own interpreter: provenflow's workers with the project venv,
the peers' workers with ``bench/.work/peers-venv``. A worker times itself and prints one JSON
line, so interpreter and import start-up are counted for neither side.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from rich.console import Console

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"  # gitignored: peers' venv, generated data, scratch folders
WORKERS = BENCH / "workers"
OUR_PYTHON = ROOT / ".venv" / "bin" / "python"
PEERS_VENV = WORK / "peers-venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
PEER_PACKAGES = ("mlflow", "dvc")

console = Console(width=120)


def peers_python() -> Path:
    """The peers' interpreter; creates ``bench/.work/peers-venv`` with mlflow and dvc if missing."""
    probe = "import importlib.util, sys; sys.exit(not all(importlib.util.find_spec(m) for m in sys.argv[1:]))"
    if (
        PEERS_PYTHON.exists()
        and subprocess.run([PEERS_PYTHON, "-c", probe, *PEER_PACKAGES], check=False).returncode == 0
    ):
        return PEERS_PYTHON
    console.print(f"[bold]Installing {', '.join(PEER_PACKAGES)} into {PEERS_VENV} (once)...")
    subprocess.run(["python3", "-m", "venv", PEERS_VENV], check=True)
    subprocess.run([PEERS_PYTHON, "-m", "pip", "install", "--quiet", *PEER_PACKAGES], check=True)
    return PEERS_PYTHON


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh folder under bench/.work/tmp (same disk as the generated data), removed afterwards."""
    parent = WORK / "tmp"
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-", dir=parent) as tmp:
        yield Path(tmp)


def run_worker(python: Path, worker: str, cwd: Path, *args: str) -> dict:
    """Run ``bench/workers/<worker>.py`` from a copy in ``cwd`` and return the JSON it printed last."""
    script = cwd / f"{worker}.py"
    shutil.copyfile(WORKERS / f"{worker}.py", script)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [python, script, *args], check=False, cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {worker} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def code_version() -> str:
    """The commit measured; "+dirty" when the tree outside bench/ has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], check=False, capture_output=True, text=True)
    if head.returncode != 0:
        return "no git"
    changes = subprocess.run(
        [*git, "status", "--porcelain", "--", ".", ":!bench"], check=False, capture_output=True, text=True
    )
    return head.stdout.strip() + ("+dirty" if changes.stdout.strip() else "")


def machine_summary() -> str:
    """Date, CPU, cores, kernel, Python and the commit measured: the line to paste above a result."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{datetime.now().astimezone():%Y-%m-%d %H:%M %Z} · {cpu} · {os.cpu_count()} cores · "
        f"Linux {platform.release()} · Python {platform.python_version()} · provenflow at {code_version()}"
    )


def verdict(met: bool) -> str:
    return "[green]met[/green]" if met else "[red]NOT met[/red]"


# -- the summary of every benchmark: bench/.work/summary.json ------------------------------

SUMMARY = WORK / "summary.json"
# The run before: ``make bench`` keeps it so each figure can be checked against a second run (±20%).
PREVIOUS = WORK / "summary.previous.json"
REPRODUCE_WITHIN = 0.20


def record(
    name: str,
    value: float,
    unit: str,
    target: float | None = None,
    better: str = "lower",
    note: str = "",
    peer: str = "",
) -> bool | None:
    """Add one figure to ``bench/.work/summary.json`` (an earlier figure of the same name is replaced)
    and return whether it meets ``target`` (None without one). ``better``: "lower" (the figure must be
    ≤ target) or "higher" (≥ target). ``make bench`` starts the file afresh and prints it at the end;
    its ``commit`` says what was measured, so two summaries compare commits. ``peer``: what the figure
    is measured against (a ratio's denominator), shown beside it in bench/README.md's tables.

        record("datasets: put_file ÷ cp", 1.31, "×", target=1.5, better="lower")
    """
    import fcntl
    import sys

    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    met = None if target is None else (value <= target if better == "lower" else value >= target)
    WORK.mkdir(parents=True, exist_ok=True)
    with open(SUMMARY.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # benches may run side by side
        summary = json.loads(SUMMARY.read_text()) if SUMMARY.exists() else {}
        summary.update(commit=code_version(), machine=machine_summary())
        summary.setdefault("figures", {})[name] = {
            "value": value, "unit": unit, "target": target, "better": better, "met": met,
            "bench": Path(sys.argv[0]).name, "note": note, "peer": peer, "load_average": round(os.getloadavg()[0], 2),
            "at": datetime.now().astimezone().isoformat(timespec="seconds"),
        }  # fmt: skip
        tmp = SUMMARY.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(SUMMARY)
    return met


def summary_table() -> None:
    """Print bench/.work/summary.json as a table (``python bench/common.py``)."""
    from rich.table import Table

    if not SUMMARY.exists():
        console.print(f"no {SUMMARY} yet: run `make bench`")
        return
    summary = json.loads(SUMMARY.read_text())
    table = Table(title=f"bench summary · provenflow at {summary.get('commit')} · {SUMMARY}")
    for column in ("figure", "value", "target", "result", "bench"):
        table.add_column(column, justify="right" if column in ("value", "target") else "left")
    for name, f in summary.get("figures", {}).items():
        sign = "≤" if f["better"] == "lower" else "≥"
        target = "" if f["target"] is None else f"{sign} {f['target']:g} {f['unit']}"
        result = "" if f["met"] is None else verdict(f["met"])
        table.add_row(name, f"{f['value']:.4g} {f['unit']}", target, result, f["bench"])
    console.print(table)


README = Path(__file__).resolve().parent / "README.md"
_START, _END = "<!-- figures: generated by bench/all.py from .work/summary.json; do not edit -->", "<!-- /figures -->"


def reproduced(value: float, earlier: float | None) -> bool | None:
    """Whether a figure is within 20% of the same figure of the run before (None: no earlier figure)."""
    if earlier is None:
        return None
    if earlier == value:
        return True
    scale = max(abs(value), abs(earlier))
    return abs(value - earlier) <= REPRODUCE_WITHIN * scale


def figures_markdown(summary: dict, previous: dict | None = None) -> str:
    """The summary as bench/README.md's table: every figure with its peer, target, result, the load
    average it was measured at, the script and when; a figure whose target is unmet says so, and one
    that the run before (``previous``, same machine) measured more than 20% apart is marked so."""
    earlier = (previous or {}).get("figures", {})
    lines = [
        f"Measured at commit `{summary.get('commit')}` on {summary.get('machine', '')}. Wall times follow the free",
        "cores: read each figure with its load average (2 cores here; above ~2 the figure is inflated).",
        "`second run`: the same figure in the run before this one "
        + (f"(commit `{previous.get('commit')}`)" if previous else "(none kept)")
        + "; **not reproduced** when the two differ by more than 20%.",
        "",
        "| figure | value | peer | target | result | second run | load avg | script | at |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in summary.get("figures", {}).items():
        sign = "≤" if f["better"] == "lower" else "≥"
        target = "" if f["target"] is None else f"{sign} {f['target']:g} {f['unit']}"
        result = "" if f["met"] is None else ("met" if f["met"] else "**not met**")
        before = earlier.get(name, {}).get("value")
        again = reproduced(f["value"], before)
        second = "" if again is None else f"{before:.4g}" + ("" if again else " **not reproduced**")
        cells = [name, f"{f['value']:.4g} {f['unit']}".strip(), f.get("peer", ""), target, result, second,
                 f"{f.get('load_average', '')}", f"`{f['bench']}`", f.get("at", "")]  # fmt: skip
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def write_readme_figures(readme: Path = README) -> bool:
    """Replace the generated block of bench/README.md with the current summary; False without one."""
    if not SUMMARY.exists():
        return False
    text = readme.read_text()
    start, end = text.find(_START), text.find(_END)
    if start < 0 or end < start:
        raise RuntimeError(f"{readme} has no generated block ({_START} … {_END})")
    previous = json.loads(PREVIOUS.read_text()) if PREVIOUS.exists() else None
    block = f"{_START}\n{figures_markdown(json.loads(SUMMARY.read_text()), previous)}\n{_END}"
    readme.write_text(text[:start] + block + text[end + len(_END) :])
    return True


if __name__ == "__main__":
    summary_table()
