"""Benchmark: what provenflow adds to a run, and how fast its commands answer (issue 12).

    .venv/bin/python bench/overhead.py [--reps 3] [--runs 1000] [--no-cold]

Whole commands timed from outside, as a user runs them, in a fresh project with the project's
server running (``provenflow server start``, which also starts the warm runner):

- the plain script (pandas + scikit-learn: read the CSV, split, fit LogisticRegression, score)
  vs ``provenflow model-run`` of the same on the demo data; target ≤ +0.5 s;
- plain ``read_csv`` + ``to_parquet`` vs ``provenflow data-run`` of the demo CSV; target ≤ +1 s;
- ``runs list``, ``datasets list``, ``models list``, ``lineage``, ``server status`` with
  ``--runs`` runs in the ledger; target ≤ 0.3 s each;
- ``server start`` from stopped, its state kept (the everyday case: ``server stop`` then
  ``server start``); target ≤ 5 s when the machine is idle. Side by side, interleaved: plain
  ``prefect server start`` from stopped with its state kept (its own PREFECT_HOME), timed until
  its /api/health answers. The first start of a fresh project (it creates Prefect's database)
  is printed too, without a target. "server cpu" is the CPU the Prefect server process used
  until the command returned: on a loaded machine it says what an idle one would take.

With the runner stopped the tracked runs and the listings are measured again ("cold": each
command imports what it needs itself, as before the runner). The machine's load average is
printed with the results: on a shared 2-core machine every figure grows with it; the CPU
seconds (dim) grow much less.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from statistics import median

import common
from common import OUR_PYTHON, ROOT, console, machine_summary, scratch_dir, verdict
from rich.table import Table

PYTHON = str(OUR_PYTHON if Path(OUR_PYTHON).exists() else sys.executable)  # a worktree uses the main venv
CLI = str(Path(PYTHON).parent / "provenflow")
PENGUINS = ROOT / "provenflow" / "demo" / "penguins.csv"
ESTIMATOR = "sklearn.linear_model.LogisticRegression"

PLAIN_MODEL = """
# The model-run's pipeline written by hand: impute and scale the numbers, impute and one-hot the
# categories, stratified split, fit, accuracy, F1 and ROC AUC.
import pandas as pd
from sklearn import metrics
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

frame = pd.read_csv("penguins.csv")
frame = frame[frame["species"].notna()]
y = frame.pop("species")
numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
categorical = [c for c in frame.columns if c not in numeric]
prepare = ColumnTransformer([
    ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric),
    ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                              ("onehot", OneHotEncoder(handle_unknown="ignore"))]), categorical),
])
model = Pipeline([("prepare", prepare), ("model", LogisticRegression(max_iter=2000, random_state=42))])
X_train, X_test, y_train, y_test = train_test_split(frame.astype({c: object for c in categorical}), y,
                                                    test_size=0.25, random_state=42, stratify=y)
model.fit(X_train, y_train)
predicted = model.predict(X_test)
print(metrics.accuracy_score(y_test, predicted), metrics.f1_score(y_test, predicted, average="macro"),
      metrics.roc_auc_score(y_test, model.predict_proba(X_test), multi_class="ovr"))
"""
PLAIN_DATA = """
import pandas as pd
pd.read_csv("penguins.csv").to_parquet("plain.parquet")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
        self.env["PROVENFLOW_SERVER_PORT"] = str(_free_port())
        self.env["PYTHONWARNINGS"] = "ignore"
        self.env["PROVENFLOW_RUNNER_CPU"] = "1"  # a forked run reports its CPU time
        self.cpu: list[float] = []
        shutil.copy(PENGUINS, root / "penguins.csv")
        (root / "plain_model.py").write_text(PLAIN_MODEL)
        (root / "plain_data.py").write_text(PLAIN_DATA)
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)

    def run(self, *args: str, check: bool = True) -> float:
        """Wall seconds of the command; its CPU seconds (with a forked run's) go to self.cpu."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        forked = re.search(r"runner: the run used ([0-9.]+) s of CPU", done.stderr)
        self.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                        + (float(forked.group(1)) if forked else 0.0))  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        return seconds

    def pf(self, *args: str, check: bool = True) -> float:
        return self.run(CLI, *args, check=check)

    def runner(self, call: str) -> None:
        code = f"from pathlib import Path; from provenflow import runner; print(runner.{call})"
        # check=False: code from before the runner (measuring "before") has no provenflow.platform.runner
        subprocess.run([PYTHON, "-c", code], cwd=self.root, env=self.env, check=False, capture_output=True)

    def seed_runs(self, total: int) -> None:
        """Copies of the model run (with its metrics) until the ledger holds TOTAL runs."""
        db = sqlite3.connect(self.root / ".provenflow" / "ledger.db")
        columns = [c[1] for c in db.execute("pragma table_info(runs)")]
        metric_columns = [c[1] for c in db.execute("pragma table_info(metrics)")]
        template = dict(zip(columns, db.execute("select * from runs where kind = 'model' limit 1").fetchone(), strict=True))
        metrics = db.execute("select * from metrics where run_id = ?", (template["id"],)).fetchall()
        start = dt.datetime(2026, 1, 1)
        for i in range(total - db.execute("select count(*) from runs").fetchone()[0]):
            row = dict(template, id=str(uuid.uuid4()), started_at=str(start + dt.timedelta(minutes=i)))
            db.execute(f"insert into runs ({','.join(columns)}) values ({','.join('?' * len(columns))})",
                       [row[c] for c in columns])  # fmt: skip
            for metric in metrics:
                values = dict(zip(metric_columns, metric, strict=True), id=None, run_id=row["id"])
                db.execute(
                    f"insert into metrics ({','.join(metric_columns)}) values ({','.join('?' * len(metric_columns))})",
                    [values[c] for c in metric_columns],
                )
        db.commit()
        db.close()


CPU: dict[str, float] = {}  # median CPU seconds per figure: what the load average does not inflate much


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, with waited-for children) the process PID has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _healthy(port: int) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=0.5) as answer:
        return answer.status == 200
    return False


class PlainPrefect:
    """`prefect server start` on its own (its own PREFECT_HOME and port): the peer of `server start`."""

    def __init__(self, home: Path) -> None:
        self.port = _free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Seconds until /api/health answers; its CPU seconds go to CPU['plain prefect start']."""
        began = time.perf_counter()
        self.process = subprocess.Popen(
            [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        while not _healthy(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server start exited with {self.process.returncode}")
            time.sleep(0.1)
        seconds = time.perf_counter() - began
        CPU_SAMPLES.setdefault("plain prefect start", []).append(_process_cpu(self.process.pid))
        return seconds

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


CPU_SAMPLES: dict[str, list[float]] = {}


def _server_start(project: Project) -> float:
    """`provenflow server start` (timed), with the Prefect server's CPU until it returned; then,
    untimed, waits for the warm runner it starts, so its imports do not slow what comes next."""
    seconds = project.pf("server", "start")
    pid = int((project.root / ".provenflow" / "server.pid").read_text())
    CPU_SAMPLES.setdefault("server start", []).append(project.cpu[-1] + _process_cpu(pid))
    project.runner("start(wait=600)")
    return seconds


def _median(project: Project, reps: int, name: str, *args: str, cli: bool = True) -> float:
    call = project.pf if cli else project.run
    project.cpu.clear()
    wall = median(call(*args) for _ in range(reps))
    CPU[name] = median(project.cpu)
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure, median reported (default 3)")
    parser.add_argument("--runs", type=int, default=1000, help="runs in the ledger for the listings (default 1000)")
    parser.add_argument("--no-cold", action="store_true", help="skip the tracked runs without the runner")
    args = parser.parse_args()
    console.print(machine_summary())

    model_run = ("model-run", "--dataset", "penguins@latest", "--target", "species", "--estimator", ESTIMATOR,
                 "--param", "max_iter=2000")  # fmt: skip
    data_run = ("data-run", "--name", "penguins", "--source", "penguins.csv")
    figures: dict[str, float] = {}
    with scratch_dir("overhead") as tmp:
        project = Project(tmp)
        plain = PlainPrefect(tmp / "plain-prefect-home")
        try:
            figures["server start first"] = _server_start(project)
            CPU["server start first"] = CPU_SAMPLES.pop("server start")[0]
            figures["plain prefect first"] = plain.start()
            CPU["plain prefect first"] = CPU_SAMPLES.pop("plain prefect start")[0]
            plain.stop()
            again, plain_again = [], []
            for _ in range(args.reps):  # interleaved, so a change of load hits both alike
                project.pf("server", "stop")
                again.append(_server_start(project))
                plain_again.append(plain.start())
                plain.stop()
            figures["server start"], figures["plain prefect start"] = median(again), median(plain_again)
            CPU["server start"] = median(CPU_SAMPLES["server start"])
            CPU["plain prefect start"] = median(CPU_SAMPLES["plain prefect start"])
            project.pf(*data_run)  # the dataset and its suite, once
            project.pf(*model_run)
            figures["plain model"] = _median(project, args.reps, "plain model", PYTHON, "plain_model.py", cli=False)
            figures["model-run"] = _median(project, args.reps, "model-run", *model_run)
            figures["plain data"] = _median(project, args.reps, "plain data", PYTHON, "plain_data.py", cli=False)
            figures["data-run"] = _median(project, args.reps, "data-run", *data_run)
            project.seed_runs(args.runs)
            for command in LISTINGS:
                project.pf(*command)  # the first pays the ledger's open
                figures[" ".join(command)] = _median(project, args.reps, " ".join(command), *command)
            if not args.no_cold:
                project.runner("stop()")
                figures["model-run cold"] = _median(project, args.reps, "model-run cold", *model_run)
                figures["data-run cold"] = _median(project, args.reps, "data-run cold", *data_run)
                for command in LISTINGS:
                    name = " ".join(command)
                    figures[f"{name} cold"] = _median(project, args.reps, f"{name} cold", *command)
        finally:
            project.pf("server", "stop", check=False)
            plain.stop()
    report(figures, args)


LISTINGS = (("runs", "list"), ("datasets", "list"), ("models", "list"), ("lineage", "penguins-species@1"),
            ("server", "status"))  # fmt: skip


def report(f: dict[str, float], args: argparse.Namespace) -> None:
    load = os.getloadavg()
    table = Table(title=f"provenflow's overhead (median of {args.reps}; load average {load[0]:.1f}, {os.cpu_count()} cores)")
    for column in ("what", "plain", "provenflow", "gap", "target", "met"):
        table.add_column(column, justify="left" if column in ("what", "target") else "right")
    rows = []  # (name, figure, target) for the summary

    def cpu(name: str) -> str:
        return f" [dim](cpu {CPU[name]:.2f})[/dim]" if name in CPU else ""

    def pair(what: str, plain: str, tracked: str, limit: float) -> None:
        gap = f[tracked] - f[plain]
        rows.append((what, gap, limit))
        cold = f.get(f"{tracked} cold")
        table.add_row(what, f"{f[plain]:.2f} s" + cpu(plain),
                      f"{f[tracked]:.2f} s" + cpu(tracked) + (f"  (no runner: {cold:.2f} s{cpu(tracked + ' cold')})" if cold else ""),
                      f"{gap:+.2f} s" + (f" [dim](cpu {CPU[tracked] - CPU[plain]:+.2f})[/dim]" if plain in CPU else ""), f"≤ +{limit:g} s", verdict(gap <= limit))  # fmt: skip

    pair("model-run (LogisticRegression, demo data)", "plain model", "model-run", 0.5)
    pair("data-run (demo CSV)", "plain data", "data-run", 1.0)
    for name in ("runs list", "datasets list", "models list", "lineage penguins-species@1", "server status"):
        cold = f.get(f"{name} cold")
        rows.append((f"`{name}` with {args.runs} runs", f[name], 0.3))
        table.add_row(f"`{name}` ({args.runs} runs)", "", f"{f[name]:.2f} s" + cpu(name) + (f"  (no runner: {cold:.2f} s{cpu(name + ' cold')})" if cold else ""),
                      "", "≤ 0.3 s", verdict(f[name] <= 0.3))  # fmt: skip
    rows.append(("`server start` from stopped", f["server start"], 5.0))
    table.add_row("`server start` from stopped (server cpu)", f"prefect server start: {f['plain prefect start']:.2f} s" + cpu("plain prefect start"),
                  f"{f['server start']:.2f} s" + cpu("server start"), f"{f['server start'] - f['plain prefect start']:+.2f} s",
                  "≤ 5 s (idle)", verdict(f["server start"] <= 5))  # fmt: skip
    table.add_row("first start, fresh project", f"{f['plain prefect first']:.2f} s" + cpu("plain prefect first"),
                  f"{f['server start first']:.2f} s" + cpu("server start first"),
                  f"{f['server start first'] - f['plain prefect first']:+.2f} s", "", "")  # fmt: skip
    console.print(table)
    for what, figure, limit in rows:  # the `make bench` summary, bench/.work/summary.json
        common.record(f"overhead: {what}", figure, "s", target=limit, better="lower",
                      note=f"load average {load[0]:.1f}")  # fmt: skip
    common.record("overhead: plain `prefect server start` from stopped (peer)", f["plain prefect start"], "s")
    common.record("overhead: `server start`, first start of a fresh project", f["server start first"], "s")
    for name in ("runs list", "datasets list", "models list", "lineage penguins-species@1", "server status"):
        if f"{name} cold" in f:
            common.record(f"overhead: `{name}` with {args.runs} runs, no runner", f[f"{name} cold"], "s")

if __name__ == "__main__":
    sys.exit(main())
