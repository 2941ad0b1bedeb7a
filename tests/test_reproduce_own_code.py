"""Reproducing runs of a team's own code (issue #18): a script, a notebook and the team's own Prefect
flow, each in a temporary git repository, re-executed at the recorded commit + diff with their
dataset inputs pinned to the versions they read, against the real Prefect server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import provenflow as pf
from provenflow.errors import SignatureError
from provenflow.ledger import models as m
from provenflow.tracking.run import DatasetOutput
from provenflow.workspace import Workspace

pytestmark = pytest.mark.usefixtures("prefect_api")
WT = str(Path(__file__).resolve().parent.parent)

# The team's code: reads the dataset version it is given (``@latest``), writes a result and a metric.
BODY = """\
from provenflow.digest import Digest
from provenflow.workspace import Workspace

def work(scale):
    version = pf.input("numbers@latest")
    text = Workspace.default().store.read_bytes(Digest(version.hash)).decode()
    total = sum(int(x) for x in text.split()) * scale
    with open("result.txt", "w") as f:
        f.write(str(total))
    pf.output("result.txt")
    pf.metric("total", total)
"""
SCRIPT = (
    "import sys\nimport provenflow as pf\n" + BODY + "\n"
    "with pf.start('train-script', parameters={'scale': float(sys.argv[1])}) as run:\n"
    "    work(float(sys.argv[1]))\n"
    "print('RUN', run.id)\n"
)
FLOW = (
    "from prefect import flow\nimport provenflow as pf\n" + BODY + "\n"
    "@flow(name='team-train')\n"
    "def train(scale: float = 1.0) -> str:\n"
    "    with pf.start('train-flow', parameters={'scale': scale}) as run:\n"
    "        work(scale)\n"
    "    return run.id\n"
)
NOTEBOOK_CELLS = [
    "import provenflow as pf\n" + BODY,
    "run = pf.start('train-notebook', parameters={'scale': 3.0})\nwork(3.0)\nsummary = pf.end()\nprint('RUN', run.id)",
]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(project: Path) -> Path:
    (project / ".gitignore").write_text(".provenflow/\nresult.txt\n")
    git(project, "init", "-q")
    git(project, "config", "user.email", "ds@example.com")
    git(project, "config", "user.name", "ds")
    return project


def commit(repo: Path) -> None:
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "team code")


def dataset_version(text: str) -> str:
    """A version of dataset ``numbers`` (raw bytes): what the team's data preparation produced."""
    workspace = Workspace.default()
    stored = workspace.store.put_bytes(text.encode())
    with pf.start("prepare-numbers", kind="data", flow="prepare") as run:
        run.output(DatasetOutput("numbers", stored.digest, stored.size, "store", "txt"))
    return stored.digest.hex


def reproduce(run_id: str) -> dict:
    from provenflow.flows.reproduce import reproduce as flow

    return flow(run_id=run_id)


def recorded(run_id: str) -> m.Run:
    with Workspace.default().ledger.reader() as session:
        run = session.get(m.Run, run_id)
        session.expunge(run)
        return run


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": WT}


def run_script(repo: Path, *argv: str) -> str:
    """Run a script of REPO as its team would (``python train.py 2``); the id of the run it recorded."""
    done = subprocess.run([sys.executable, *argv], cwd=repo, env=child_env(), capture_output=True, text=True, check=True)
    return done.stdout.split("RUN ")[1].split()[0]


def test_a_script_run_reproduces_identical_with_its_input_pinned(repo):
    first = dataset_version("1 2 3")
    (repo / "train.py").write_text(SCRIPT)
    commit(repo)
    run_id = run_script(repo, "train.py", "2")
    run = recorded(run_id)
    assert run.code_entry == {"kind": "script", "path": "train.py", "argv": ["2"], "cwd": "."}
    assert run.code_seal.startswith("ed25519:")
    dataset_version("10 20 30")  # a newer version: @latest now means another one
    # The working copy moves on too: reproduction uses the recorded commit, not this.
    (repo / "train.py").write_text(SCRIPT.replace("* scale", "* scale * 100"))

    report = reproduce(run_id)
    assert report["verdict"] == "identical", report
    assert report["metrics"]["total"] == {"original": 12.0, "reproduced": 12.0, "equal": True}
    assert report["code"]["same"] is True and report["entry"]["kind"] == "script"
    from provenflow.cli import output

    with output.console.capture() as shown:  # what `provenflow reproduce RUN` prints
        output.reproduction(report)
    assert "identical" in shown.get() and "re-ran script train.py" in shown.get()
    assert "output file:result.txt: same" in shown.get()
    (result,) = report["outputs"].values()
    assert result["original"] == result["reproduced"]
    again = recorded(report["reproduction"])
    inputs = {io.hash for io in Workspace.default().ledger.reader().__enter__().get(m.Run, again.id).io
              if io.direction == "input"}  # fmt: skip
    assert first in inputs


def test_own_prefect_flow_run_reproduces_identical(repo):
    from prefect.flows import load_flow_from_entrypoint

    dataset_version("4 5")
    (repo / "pipelines").mkdir()
    (repo / "pipelines" / "train_flow.py").write_text(FLOW)
    commit(repo)
    train = load_flow_from_entrypoint(str(repo / "pipelines" / "train_flow.py") + ":train")
    run_id = train(scale=0.5)
    run = recorded(run_id)
    assert run.code_entry == {"kind": "flow", "path": "pipelines/train_flow.py", "function": "train",
                              "parameters": {"scale": 0.5}, "cwd": "."}  # fmt: skip
    dataset_version("40 50")

    report = reproduce(run_id)
    assert report["verdict"] == "identical", report
    assert report["metrics"]["total"]["reproduced"] == 4.5


def test_a_notebook_run_reproduces_identical_in_a_real_kernel(repo, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    dataset_version("7 8")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    (repo / "analysis").mkdir()
    nbformat.write(notebook, repo / "analysis" / "train.ipynb")
    commit(repo)
    # What Jupyter's server does for a notebook it runs (nbclient does not).
    monkeypatch.setenv("JPY_SESSION_NAME", str(repo / "analysis" / "train.ipynb"))
    monkeypatch.setenv("PYTHONPATH", WT)
    executed = NotebookClient(notebook, kernel_name="python3",
                              resources={"metadata": {"path": str(repo / "analysis")}}).execute()  # fmt: skip
    output = executed.cells[1].outputs[0]["text"]
    run_id = output.split("RUN ")[1].split()[0]
    run = recorded(run_id)
    assert run.code_entry["kind"] == "notebook" and run.code_entry["path"] == "analysis/train.ipynb"
    monkeypatch.delenv("JPY_SESSION_NAME")
    dataset_version("70 80")

    report = reproduce(run_id)
    assert report["verdict"] == "identical", report
    assert report["metrics"]["total"]["reproduced"] == 45.0


def test_a_changed_entry_point_is_refused(repo):
    dataset_version("1")
    (repo / "train.py").write_text(SCRIPT)
    commit(repo)
    run_id = run_script(repo, "train.py", "1")
    with Workspace.default().ledger.transaction() as session:  # a ledger write, no key
        run = session.get(m.Run, run_id)
        run.code_entry = {**run.code_entry, "argv": ["1; import os"]}
    with pytest.raises(SignatureError, match="code seal does not match"):
        reproduce(run_id)


def test_runs_of_own_code_record_no_entry_outside_git(project):
    with pf.start("outside") as run:
        pf.metric("x", 1.0)
    assert recorded(run.id).code_entry is None
    assert json.dumps(recorded(run.id).code_seal or "")  # sealed or not, never an error


UNSEEDED = """\
import random
import provenflow as pf
from provenflow.tracking.run import DatasetOutput
from provenflow.workspace import Workspace

with pf.start("prepare-unseeded") as run:
    data = " ".join(str(random.random()) for _ in range(3)).encode()
    stored = Workspace.default().store.put_bytes(data)
    run.output(DatasetOutput("features", stored.digest, stored.size, "store", "txt"))
    pf.metric("rows", 3)
print("RUN", run.id)
"""


def test_a_different_result_says_why_and_registers_nothing(repo):
    """The team's data preparation draws unseeded random numbers: the re-run's dataset differs, the
    verdict says so, and the re-run's table does not become features@latest."""
    (repo / "prepare.py").write_text(UNSEEDED)
    commit(repo)
    run_id = run_script(repo, "prepare.py")
    report = reproduce(run_id)
    assert report["verdict"] == "different", report
    assert report["causes"] == ["non-determinism"], report
    (features,) = report["outputs"].values()
    assert features["original"] != features["reproduced"]
    with Workspace.default().ledger.reader() as session:
        versions = session.query(m.DatasetVersion).filter(m.DatasetVersion.name == "features").all()
    assert len(versions) == 1 and versions[0].hash == features["original"]


# A model of the team's own: doubles x, plus an offset; it keeps when it was trained (so it never pickles
# the same twice) and, when told to, draws its offset unseeded (so it predicts differently each time).
SCORER = """\
class Doubler:
    def __init__(self, trained_at, offset):
        self.trained_at, self.offset = trained_at, offset

    def predict(self, frame):
        return frame["x"].to_numpy() * 2.0 + self.offset
"""
TRAIN_DOUBLER = """\
import random
import sys
import time

import pandas as pd

import provenflow as pf
from scorer import Doubler

with pf.start("train-doubler") as run:
    offset = random.random() if sys.argv[1] == "unseeded" else 0.5
    pf.log_model(Doubler(time.time(), offset), name="doubler", input_example=pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
print("RUN", run.id)
"""


@pytest.mark.parametrize(("how", "verdict"), [("stamped", "equivalent"), ("unseeded", "different")])
def test_a_model_with_other_bytes_is_compared_by_its_predictions(repo, how, verdict):
    """Before, any own-code model whose bytes changed was 'different': now its predictions on the
    recorded input example decide between equivalent and different, as for model-run."""
    (repo / "scorer.py").write_text(SCORER)
    (repo / "train.py").write_text(TRAIN_DOUBLER)
    commit(repo)
    run_id = run_script(repo, "train.py", how)
    report = reproduce(run_id)
    model = report["outputs"]["model:doubler"]
    assert model["original"] != model["reproduced"]  # a timestamp inside: never the same bytes
    example = report["outputs"]["input-example:doubler input example"]
    assert example["original"] == example["reproduced"]  # the rows it is compared on
    assert report["verdict"] == verdict, report
    assert report["causes"] == ["non-determinism"], report  # same data and code; as model-run says it


def test_retraining_runs_the_recorded_script_again_and_refuses_a_changed_entry(repo):
    """The retrain flow's step for a model a script trained: the script runs again in the project as
    it is now (on the newest data, nothing pinned); an entry point changed in the ledger is refused by
    its code seal before anything runs."""
    from provenflow.tasks.retrain import rerun_training_code

    dataset_version("1 2")
    (repo / "train.py").write_text(SCRIPT)
    commit(repo)
    run_id = run_script(repo, "train.py", "1")
    dataset_version("5 5")
    (started,) = rerun_training_code.fn(Workspace.default(), run_id)
    again = recorded(started)
    assert again.name == "train-script" and again.id != run_id
    with Workspace.default().ledger.reader() as session:  # the newest data, 5 + 5: not the recorded 1 + 2
        assert {x.key: x.value for x in session.get(m.Run, started).metrics} == {"total": 10.0}
    with Workspace.default().ledger.transaction() as session:  # a ledger write, no key
        session.get(m.Run, run_id).code_entry = {**recorded(run_id).code_entry, "path": "../../outside.py"}
    with pytest.raises(SignatureError, match="code seal does not match"):
        rerun_training_code.fn(Workspace.default(), run_id)


SALES_SCRIPT = """\
import provenflow as pf
from sklearn.linear_model import LinearRegression

with pf.start("train-sales") as run:
    frame = pf.dataset("sales@latest")
    x, y = frame[["price"]], frame["sold"]
    pf.log_model(LinearRegression().fit(x, y), name="sales", input_example=x.head(), eval=(x, y))
print("RUN", run.id)
"""


def test_retraining_a_script_s_model_reads_its_data_s_source_again_first(repo):
    """A team's script reads `pf.dataset("sales@latest")`, which a data run made from a folder. Before:
    the retrain re-ran the script on the version it had (`"dataset": null`), ignoring the partitions
    that had landed since, and an explicit --source too."""
    import pandas as pd

    from provenflow.flows.data_run import data_run
    from provenflow.flows.retrain import retrain
    from provenflow.ledger.refs import resolve_dataset, resolve_model

    lake = repo / "lake"
    lake.mkdir()
    rows = pd.DataFrame({"price": [float(p) for p in range(1, 41)]})
    rows.assign(sold=100 - 2 * rows["price"]).to_csv(lake / "day-1.csv", index=False)
    (repo / "train.py").write_text(SALES_SCRIPT)
    commit(repo)
    first = data_run(name="sales", source=str(lake))["dataset"]["ref"]
    run_script(repo, "train.py")
    rows.assign(sold=200 - 4 * rows["price"]).to_csv(lake / "day-2.csv", index=False)  # a new partition
    result = retrain(model="sales@1", redeploy=False, auto_approve=True)
    assert len(result["datasets"]) == 1 and result["datasets"][0] != first, result
    with Workspace.default().ledger.reader() as session:
        challenger = session.get(m.Run, resolve_model(session, result["challenger"]).run_id)
        read = {io.name for io in challenger.io if io.direction == "input" and io.kind == "dataset"}
    assert read == set(result["datasets"])  # the script trained on the version with day-2 in it
    # What the retrain reads comes from a data run's sealed parameters: a ledger write that points it
    # elsewhere (another folder, another query, with the run's Secret block) is refused.
    with Workspace.default().ledger.transaction() as session:
        producer = session.get(m.Run, resolve_dataset(session, result["datasets"][0]).run_id)
        producer.parameters = {**producer.parameters, "source": "/etc"}
    with pytest.raises(SignatureError, match="code seal does not match"):
        retrain(model=result["challenger"], redeploy=False, auto_approve=True)


def test_runs_show_diff_prints_the_uncommitted_changes_a_run_recorded(repo):
    """Before: `runs show` gave the diff's hash only; the diff itself was an object in the store."""
    dataset_version("1 2")
    (repo / "train.py").write_text(SCRIPT)
    commit(repo)
    (repo / "train.py").write_text(SCRIPT.replace("* scale", "* scale * 100"))  # not committed
    run_id = run_script(repo, "train.py", "1")
    cli = str(Path(sys.executable).parent / "provenflow")
    shown = subprocess.run([cli, "runs", "show", run_id, "--diff"], cwd=repo, env=child_env(),
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "-    total = sum(int(x) for x in text.split()) * scale\n" in shown.stdout
    assert "+    total = sum(int(x) for x in text.split()) * scale * 100\n" in shown.stdout


def test_a_data_run_of_a_project_sqlite_file_reproduces_from_the_recorded_code(repo):
    """A SQL data run of `sqlite:///db/shop.sqlite` (the project's git-ignored database): before, its
    reproduction ran the query in the temporary checkout, where db/ is not: 'unable to open database
    file'."""
    import sqlite3

    from provenflow.flows.data_run import data_run

    (repo / ".gitignore").write_text(".provenflow/\nresult.txt\ndb/\n")
    (repo / "README").write_text("the shop\n")
    commit(repo)
    (repo / "db").mkdir()
    with sqlite3.connect(repo / "db" / "shop.sqlite") as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, total REAL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, i * 1.5) for i in range(50)])
    made = data_run(name="orders", source="sqlite:///db/shop.sqlite", table="orders")
    report = reproduce(made["run_id"])
    assert report["verdict"] == "identical", report
