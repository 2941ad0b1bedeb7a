"""What `provenflow reproduce` executes is sealed (issue #19.1).

An attacker who can write the ledger and the store, but holds no signing key, stores a diff that
plants ``provenflow/__init__.py`` and points a run's ``code_diff_hash`` at it. Before code seals,
`reproduce` applied it in a worktree and ran ``python -m provenflow.modeling.replay`` there, so the
planted package shadowed the installed one and could read the signing key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import provenflow as pf
from provenflow.errors import SignatureError
from provenflow.ledger import models as m
from provenflow.workspace import Workspace

pytestmark = pytest.mark.usefixtures("prefect_api")
WT = str(Path(__file__).resolve().parents[2])


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(project: Path) -> Path:
    (project / "data.csv").write_text("a,b\n1,2\n3,4\n")
    (project / ".gitignore").write_text(".provenflow/\n")
    git(project, "init", "-q")
    git(project, "config", "user.email", "ds@example.com")
    git(project, "config", "user.name", "ds")
    git(project, "add", ".")
    git(project, "commit", "-qm", "data")
    return project


def planted_diff(repo: Path, marker: Path) -> bytes:
    """A diff that adds provenflow/__init__.py: on import it writes the signing key to ``marker``."""
    package = repo / "provenflow"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import glob, os, pathlib\n"
        "keys = glob.glob(os.path.join(os.environ.get('XDG_CONFIG_HOME', ''), 'provenflow', '*'))\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran ' + ''.join(open(k).read() for k in keys))\n"
    )
    diff = subprocess.run(
        ["git", "diff", "--binary", "--no-index", "/dev/null", "provenflow/__init__.py"],
        cwd=repo, capture_output=True, check=False,
    ).stdout  # fmt: skip
    (package / "__init__.py").unlink()
    package.rmdir()
    assert diff
    return diff


def recorded_data_run(repo: Path) -> str:
    """A run as the data-run flow records it: a file input, the commit, sealed by this machine."""
    with pf.start("data", kind="data", flow="data-run",
                  parameters={"name": "d", "source": "data.csv"}) as run:  # fmt: skip
        pf.input(repo / "data.csv")
    return run.id


def reproduce(run_id: str) -> dict:
    from provenflow.flows.reproduce import reproduce as flow

    return flow(run_id=run_id)


def worktrees(repo: Path) -> int:
    return git(repo, "worktree", "list").stdout.decode().count("\n")


def test_a_planted_diff_is_refused_before_anything_is_checked_out(repo, tmp_path):
    workspace = Workspace.default()
    run_id = recorded_data_run(repo)
    marker = tmp_path / "pwned"
    diff = workspace.store.put_bytes(planted_diff(repo, marker)).digest.hex
    with workspace.ledger.transaction() as session:  # the attacker's ledger write
        session.get(m.Run, run_id).code_diff_hash = diff
    # The command a user types: one Error line, exit 1, nothing checked out, the payload never ran.
    done = subprocess.run(
        [str(Path(sys.executable).parent / "provenflow"), "reproduce", run_id], cwd=repo,
        env={**os.environ, "PYTHONPATH": WT}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    print(f"$ provenflow reproduce {run_id}\n{done.stderr}exit {done.returncode}")
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"Error: run {run_id}: its code seal does not match"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not marker.exists(), marker.read_text()[:40]
    assert worktrees(repo) == 1  # nothing materialised


def test_an_unsealed_run_is_refused_with_the_way_to_seal_it(repo, tmp_path):
    workspace = Workspace.default()
    run_id = recorded_data_run(repo)
    with workspace.ledger.transaction() as session:
        session.get(m.Run, run_id).code_seal = None
    with pytest.raises(SignatureError, match=f"run {run_id} has no code seal.*provenflow runs seal {run_id}"):
        reproduce(run_id)
    assert worktrees(repo) == 1


def test_a_seal_by_another_key_is_refused(repo, monkeypatch):
    from provenflow.modeling.signing import Ed25519Key
    from provenflow.settings import get_settings

    run_id = recorded_data_run(repo)
    other = Ed25519Key.generate("other")
    monkeypatch.setenv("PROVENFLOW_SIGNING_KEY", other.public_text())
    get_settings.cache_clear()
    with pytest.raises(SignatureError, match=f"run {run_id} was sealed with key .* is {other.id}"):
        reproduce(run_id)


def test_a_provenflow_folder_in_the_recorded_code_never_stands_in_for_provenflow(repo, tmp_path):
    """Even sealed code: the replay runs isolated, with this provenflow imported first, so a
    ``provenflow/`` folder at the root of the checked-out code (where the replay works) is not imported."""
    marker = tmp_path / "shadowed"
    (repo / "provenflow").mkdir()
    (repo / "provenflow" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nraise SystemExit('the planted provenflow ran')\n"
    )
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a folder named provenflow")
    run_id = recorded_data_run(repo)
    report = reproduce(run_id)
    assert not marker.exists()
    assert report["dataset_hash"]["reproduced"] is not None  # the real data-run ran
