"""provenflow at home in a team's own Prefect project, which has its own `flows`, `tasks` and
`blocks` packages and its own deployment: `provenflow init` adds provenflow's deployments to the
team's prefect.yaml without touching theirs, `provenflow up` deploys both, both run on workers,
and model runs, reproduction and serving work there.

provenflow is installed the way users get it: a wheel built from this checkout, installed into a
folder that is the only entry of PYTHONPATH (so nothing of the repository's top level is
importable, as after `pip install provenflow`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import PENGUINS, REPO
from tests.services import free_port, unavailable

ROW = {"island": "Biscoe", "bill_length_mm": 45.1, "bill_depth_mm": 14.5, "flipper_length_mm": 215.0,
       "body_mass_g": 5000.0, "sex": "female", "year": 2008}  # fmt: skip

THEIR_PREFECT_YAML = """\
# The data team's Prefect project.
name: team
prefect-version: 3.4.0

build: null
push: null

deployments:
# Nightly clean-up (owned by the data team).
- name: nightly
  entrypoint: flows/etl.py:etl   # our own flow, from our own flows/ package
  parameters: {rows: 5}
  work_pool:
    name: team-pool
"""

THEIR_FILES = {
    "flows/__init__.py": '"""The team\'s flows."""\n',
    "tasks/__init__.py": '"""The team\'s tasks."""\n',
    "blocks/__init__.py": '"""The team\'s blocks."""\n',
    "tasks/clean.py": (
        "from prefect import task\n\n\n"
        "@task\n"
        "def clean(values: list[int], floor: int) -> list[int]:\n"
        "    return [v for v in values if v >= floor]\n"
    ),
    "blocks/mine.py": (
        "from prefect.blocks.core import Block\n\n\nclass Floor(Block):\n    value: int = 2\n"
    ),
    "flows/etl.py": (
        "import json\n"
        "import sys\n\n"
        "from prefect import flow\n\n"
        "import blocks\n"
        "import flows\n"
        "import tasks\n"
        "from blocks.mine import Floor\n"
        "from tasks.clean import clean\n\n\n"
        '@flow(name="etl")\n'
        "def etl(rows: int = 3, report: str = '') -> list[int]:\n"
        "    kept = clean(list(range(rows)), Floor().value)\n"
        "    if report:  # where the packages it imported came from\n"
        "        found = {m.__name__: m.__file__ for m in (flows, tasks, blocks)}\n"
        "        with open(report, 'w') as out:\n"
        "            json.dump({'kept': kept, 'modules': found}, out)\n"
        "    return kept\n"
    ),
}


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=team@example.com", "-c", "user.name=team", *args],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip


def _install_provenflow(base: Path) -> Path:
    """This checkout built as a wheel and installed (without dependencies: the venv has them) into
    a folder of its own."""
    source, site = base / "source", base / "site"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if built.returncode != 0:
        unavailable(f"could not build and install provenflow's wheel: {built.stderr[-800:]}")
    return site


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    base = tmp_path_factory.mktemp("team")
    site = _install_provenflow(base)
    root = base / "team"
    for name, text in THEIR_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "prefect.yaml").write_text(THEIR_PREFECT_YAML)
    shutil.copy(PENGUINS, root / "penguins.csv")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "the team's project")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_"))}
    env.update(PYTHONPATH=str(site), PROVENFLOW_SERVER_PORT=str(free_port()), PROVENFLOW_REPORTS_PORT=str(free_port()))
    yield root, env, site
    _run(root, env, "-m", "provenflow.cli.main", "down", timeout=120)


def _run(root: Path, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=timeout
    )


def _pf(root: Path, env: dict, *args: str, timeout: float = 600) -> dict:
    result = _run(root, env, "-m", "provenflow.cli.main", *args, "--json", timeout=timeout)
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-2000:]
    return json.loads(result.stdout)


def _wait(client, flow_run_id, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(flow_run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish within {timeout:.0f} s: {run.state}")


def test_no_code_imports_top_level_flows_tasks_or_blocks():
    """Those names are the user's project's: provenflow's own code says provenflow.flows etc."""
    import re

    pattern = re.compile(r"^\s*(from|import)\s+(flows|tasks|blocks)\b", re.MULTILINE)
    found = [
        f"{path.relative_to(REPO)}: {match.group(0).strip()}"
        for folder in ("provenflow", "flows", "tasks", "blocks", "tests", "bench")
        for path in (REPO / folder).rglob("*.py")
        if path != Path(__file__) and not any(part.startswith(".") for part in path.relative_to(REPO).parts)
        for match in pattern.finditer(path.read_text())
    ]
    assert found == []
    import yaml

    entrypoints = [
        d["entrypoint"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    ]
    assert all(e.startswith("provenflow.flows.") for e in entrypoints), entrypoints


def test_installed_provenflow_has_no_top_level_flows_tasks_or_blocks(team):
    _, _, site = team
    assert not {"flows", "tasks", "blocks"} & {p.name for p in site.iterdir()}
    assert (site / "provenflow" / "flows" / "model_run.py").is_file()
    assert (site / "provenflow" / "prefect.yaml").is_file()


def test_init_adds_provenflows_deployments_and_keeps_theirs_byte_for_byte(team):
    root, env, _ = team
    first = _pf(root, env, "init")
    text = (root / "prefect.yaml").read_text()
    assert text.startswith(THEIR_PREFECT_YAML)  # their entries, comments and style, unchanged
    assert "entrypoint: provenflow.flows.model_run:model_run" in text
    assert "flows/" not in text.removeprefix(THEIR_PREFECT_YAML)  # module paths, not their files
    assert {"data-run", "model-run", "retrain", "drift-monitor-penguins-sex"} <= set(first["added"])
    again = _pf(root, env, "init")
    assert again["added"] == [] and set(again["kept"]) == set(first["added"])
    assert (root / "prefect.yaml").read_text() == text
    assert (root / ".provenflow" / ".gitignore").is_file()
    import yaml

    added = {d["name"]: d for d in yaml.safe_load(text)["deployments"] if d["name"] in first["added"]}
    # The monitors watch the demo's model: paused until pointed at theirs.
    assert [s["active"] for s in added["drift-monitor-penguins-sex"]["schedules"]] == [False]


def test_up_without_init_deploys_provenflows_file_with_its_schedules_paused(tmp_path):
    import yaml

    from provenflow.platform.prefect_project import PACKAGED, deploy_file

    file = deploy_file(tmp_path)
    assert file == tmp_path / ".provenflow" / "prefect.yaml"
    shipped = yaml.safe_load(PACKAGED.read_text())["deployments"]
    deployed = yaml.safe_load(file.read_text())["deployments"]
    assert [d["name"] for d in deployed] == [d["name"] for d in shipped]
    scheduled = [s for d in deployed for s in d.get("schedules") or []]
    assert scheduled and not any(s["active"] for s in scheduled)
    assert any(s.get("active", True) for d in shipped for s in d.get("schedules") or [])  # the demo's are on
    assert deploy_file(PACKAGED.resolve().parent) == PACKAGED.resolve().parent / "prefect.yaml"


def test_theirs_and_provenflows_deploy_and_run(team, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    root, env, _ = team
    server = _pf(root, env, "server", "start")
    api = server["api_url"]
    # Before: `prefect deploy` imported every flow (~40 s), then said "create a work pool in the UI".
    early = _run(root, env, "-m", "provenflow.cli.main", "up")
    assert early.returncode == 1 and "uses work pools the Prefect server does not have: team-pool" in early.stderr
    assert "provenflow pools create --process team-pool" in early.stderr, early.stderr
    # The team's own work pool, as they made it, before provenflow deploys their prefect.yaml.
    made = _run(root, {**env, "PREFECT_API_URL": api}, "-m", "prefect", "work-pool", "create", "team-pool",
                "--type", "process")  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    report = _pf(root, env, "up")
    assert {"nightly", "data-run", "model-run", "retrain"} <= set(report["deployments"])
    assert report["processes"].get("worker")

    report_file = tmp_path / "etl.json"
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("etl/nightly")
        assert nightly.work_pool_name == "team-pool" and nightly.parameters == {"rows": 5}
        theirs = client.create_flow_run_from_deployment(nightly.id, parameters={"report": str(report_file)})
        worker = _run(root, {**env, "PREFECT_API_URL": api}, "-m", "prefect", "worker", "start",
                      "--pool", "team-pool", "--type", "process", "--run-once", "--limit", "1", timeout=300)  # fmt: skip
        assert _wait(client, theirs.id).state.is_completed(), worker.stdout[-2000:] + worker.stderr[-2000:]
        done = json.loads(report_file.read_text())
        assert done["kept"] == [2, 3, 4]
        # `import flows` (tasks, blocks) in their flow run gave their own packages, not provenflow's.
        for name in ("flows", "tasks", "blocks"):
            assert Path(done["modules"][name]).resolve() == (root / name / "__init__.py").resolve()

        data = client.create_flow_run_from_deployment(
            client.read_deployment_by_name("data-run/data-run").id,
            parameters={"name": "penguins", "source": str(root / "penguins.csv")},
        )
        assert _wait(client, data.id).state.is_completed()
        model = client.create_flow_run_from_deployment(
            client.read_deployment_by_name("model-run/model-run").id,
            parameters={"dataset": "penguins@latest", "target": "sex",
                        "estimator": "sklearn.linear_model.LogisticRegression"},
        )  # fmt: skip
        assert _wait(client, model.id).state.is_completed()
    assert (root / ".provenflow" / "ledger.db").exists()  # they ran in this project


def test_model_run_reproduce_and_serve_in_their_project(team):
    root, env, _ = team
    if not (root / ".provenflow" / "ledger.db").exists():
        _pf(root, env, "data-run", "--name", "penguins", "--source", "penguins.csv")
    trained = _pf(root, env, "model-run", "--dataset", "penguins@latest", "--target", "species",
                  "--estimator", "sklearn.tree.DecisionTreeClassifier", "--param", "max_depth=3")  # fmt: skip
    assert trained["model"]["name"] == "penguins-species"

    again = _pf(root, env, "reproduce", trained["run_id"])
    assert again["verdict"] == "identical", again

    served = _pf(root, env, "deploy", "penguins-species@latest", "--target", "local")
    request = urllib.request.Request(
        f"{served['endpoint']}/predict", data=json.dumps({"records": [ROW]}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert response.status == 200 and answer["predictions"] == ["Gentoo"]


INDENTED = """\
name: team
deployments:
  - name: etl
    entrypoint: flows/etl.py:etl
    tags:
      - nightly

# Where our workers find the code.
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /srv/team
"""


def test_init_fits_their_style_and_keeps_what_follows_their_list(tmp_path):
    import yaml

    from provenflow.platform.prefect_project import init, paused_schedules, provenflow_deployments

    (tmp_path / "prefect.yaml").write_text(INDENTED)
    init(tmp_path)
    text = (tmp_path / "prefect.yaml").read_text()
    head, tail = INDENTED.split("\n\n")
    assert text.startswith(head + "\n  # provenflow's deployments") and text.endswith("\n\n" + tail)
    assert "\n  - name: model-run\n" in text and "\n      - provenflow\n" in text  # their indentation
    loaded = yaml.safe_load(text)
    ours = paused_schedules(provenflow_deployments())
    assert loaded["deployments"] == [yaml.safe_load(INDENTED)["deployments"][0], *ours]
    assert loaded["pull"] == yaml.safe_load(INDENTED)["pull"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("deployments: [unclosed\n", "is not valid YAML"),
        ("deployments:\n  etl: {}\n", "must be a list"),
        ("deployments: [{name: etl, entrypoint: flows/etl.py:etl}]\n", "add the entries of .* by hand"),
    ],
)
def test_init_refuses_a_file_it_cannot_extend_and_leaves_it_alone(tmp_path, text, says):
    from provenflow.errors import ConfigError
    from provenflow.platform.prefect_project import init

    (tmp_path / "prefect.yaml").write_text(text)
    with pytest.raises(ConfigError, match=says):
        init(tmp_path)
    assert (tmp_path / "prefect.yaml").read_text() == text
