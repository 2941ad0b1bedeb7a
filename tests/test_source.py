"""Code identity from a real git repository: commit, uncommitted diff, untracked files."""

import subprocess

import provenflow as pf
from provenflow.digest import Digest
from provenflow.tracking.source import UNTRACKED_LIMIT, capture_code


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_repo(path):
    path.mkdir()
    git(path, "init", "-q")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    (path / "train.py").write_text("alpha = 1\n")
    git(path, "add", ".")
    git(path, "commit", "-qm", "first")
    return path


def test_clean_repo(tmp_path):
    repo = make_repo(tmp_path / "repo")
    code = capture_code(repo)
    assert len(code.commit) == 40 and code.dirty is False and code.diff is None


def test_dirty_repo_records_diff_and_small_untracked_files(tmp_path):
    repo = make_repo(tmp_path / "repo")
    (repo / "train.py").write_text("alpha = 2\n")
    (repo / "notes.txt").write_text("new file\n")
    (repo / "big.bin").write_bytes(b"x" * (UNTRACKED_LIMIT + 1))
    code = capture_code(repo)
    assert code.dirty is True
    assert b"-alpha = 1" in code.diff and b"+alpha = 2" in code.diff
    assert b"new file" in code.diff
    assert code.skipped_untracked == ("big.bin",)
    assert code.diff_hash == Digest.of_bytes(code.diff).hex


def test_not_a_repository(tmp_path):
    code = capture_code(tmp_path)
    assert code.commit is None and code.dirty is None


def test_local_state_never_makes_the_project_dirty(tmp_path, monkeypatch):
    from provenflow.settings import get_settings
    from provenflow.workspace import close_all

    repo = make_repo(tmp_path / "repo")
    monkeypatch.chdir(repo)
    monkeypatch.delenv("PROVENFLOW_HOME", raising=False)
    get_settings.cache_clear()
    try:
        with pf.start("first") as run:  # creates .provenflow/ with its ledger and store
            pf.metric("m", 1.0)
        with pf.start("second") as second:
            pf.metric("m", 2.0)
    finally:
        close_all()
        get_settings.cache_clear()
    assert (repo / ".provenflow" / "ledger.db").exists()
    assert run.summary.code["dirty"] is False and second.summary.code["dirty"] is False
