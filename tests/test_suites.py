"""Where a data run's expectation suite comes from, and that using it leaves the source tree clean:
--suite, else a suite committed as expectations/NAME.json, else the suite NAME's last data run was
validated against (kept in the store, found through the ledger), else one generated from this data."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from provenflow.digest import Digest
from provenflow.errors import ValidationFailed
from provenflow.ledger import models as m
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS

pytestmark = pytest.mark.usefixtures("prefect_api")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(project: Path) -> Path:
    shutil.copy(PENGUINS, project / "penguins.csv")
    git(project, "init", "-q")
    git(project, "config", "user.email", "ds@example.com")
    git(project, "config", "user.name", "ds")
    git(project, "add", ".")
    git(project, "commit", "-qm", "data")
    return project


def _run(run_id: str) -> tuple[bool | None, list[tuple[str, str]]]:
    with Workspace.default().ledger.reader() as s:
        run = s.get(m.Run, run_id)
        return run.code_dirty, [(io.kind, io.hash) for io in run.io if io.direction == "input"]


def _suite_hash(run_id: str) -> str:
    return next(h for kind, h in _run(run_id)[1] if kind == "suite")


def test_generated_suite_leaves_the_source_tree_clean(repo):
    from provenflow.flows.data_run import data_run

    first = data_run(name="penguins", source="penguins.csv")
    assert first["validation"]["created_suite"]
    assert git(repo, "status", "--porcelain") == ""  # nothing written into the working tree
    assert not (repo / "expectations").exists()
    second = data_run(name="penguins", source="penguins.csv")
    assert not second["validation"]["created_suite"]
    assert _run(first["run_id"])[0] is False and _run(second["run_id"])[0] is False
    # The suite is a stored object, recorded as an input of both runs: the same one.
    suite = _suite_hash(first["run_id"])
    assert _suite_hash(second["run_id"]) == suite
    stored = json.loads(Workspace.default().store.read_bytes(Digest(suite)))
    assert {"expect_table_columns_to_match_set"} <= {e["type"] for e in stored["expectations"]}
    # A copy to read (and to commit as expectations/NAME.json to edit it) under the git-ignored home.
    assert json.loads(Path(first["validation"]["suite_path"]).read_text()) == stored
    assert Path(first["validation"]["suite_path"]).is_relative_to(repo / ".provenflow")


def test_the_recorded_suite_holds_without_the_local_copy(repo):
    from provenflow.flows.data_run import data_run

    first = data_run(name="penguins", source="penguins.csv")
    Path(first["validation"]["suite_path"]).unlink()  # e.g. another machine, same ledger and store
    changed = repo / "changed.csv"
    changed.write_text((repo / "penguins.csv").read_text().replace(",39.1,", ",thirty-nine,", 1))
    with pytest.raises(ValidationFailed, match="in_type_list on 'bill_length_mm'"):
        data_run(name="penguins", source=str(changed))


def test_data_that_changed_on_purpose_gets_a_new_suite_when_asked(repo):
    from provenflow.flows.data_run import data_run

    first = data_run(name="penguins", source="penguins.csv")
    (repo / "fewer.csv").write_text(
        "\n".join(",".join(line.split(",")[:-1]) for line in (repo / "penguins.csv").read_text().splitlines())
    )
    with pytest.raises(ValidationFailed, match="run again with --suite new") as refused:
        data_run(name="penguins", source="fewer.csv")
    assert "expect_table_columns_to_match_set" in str(refused.value)
    second = data_run(name="penguins", source="fewer.csv", suite="new")
    assert second["validation"]["created_suite"]
    assert _suite_hash(second["run_id"]) != _suite_hash(first["run_id"])
    third = data_run(name="penguins", source="fewer.csv")  # later runs keep to the new suite
    assert _suite_hash(third["run_id"]) == _suite_hash(second["run_id"])


def test_committed_suite_is_the_default_and_explicit_suite_still_works(repo):
    from provenflow.flows.data_run import data_run

    strict = {"name": "strict", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "sex"}}]}  # fmt: skip
    lenient = {"name": "lenient", "expectations": [
        {"type": "expect_column_to_exist", "kwargs": {"column": "sex"}}]}  # fmt: skip
    data_run(name="penguins", source="penguins.csv")  # a generated suite is recorded first
    (repo / "expectations").mkdir()
    (repo / "expectations" / "penguins.json").write_text(json.dumps(strict))
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the team's suite")
    with pytest.raises(ValidationFailed, match=r"(?s)expectations/penguins.json.*not_be_null on 'sex'"):
        data_run(name="penguins", source="penguins.csv")
    (repo / "lenient.json").write_text(json.dumps(lenient))
    explicit = data_run(name="penguins", source="penguins.csv", suite=str(repo / "lenient.json"))
    assert explicit["validation"]["suite"] == "lenient"
    assert ("suite", Digest.of_file(repo / "lenient.json").hex) in _run(explicit["run_id"])[1]
    # An explicit one-off suite does not become the default: the committed one still applies.
    (repo / "lenient.json").unlink()
    with pytest.raises(ValidationFailed, match="not_be_null on 'sex'"):
        data_run(name="penguins", source="penguins.csv")


def test_a_committed_suite_like_the_demos_records_clean_code(repo):
    from provenflow.flows.data_run import data_run
    from tests.conftest import REPO

    (repo / "expectations").mkdir()
    shutil.copy(REPO / "expectations" / "penguins.json", repo / "expectations" / "penguins.json")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "the demo's suite")
    for _ in range(2):
        result = data_run(name="penguins", source="penguins.csv")
        assert not result["validation"]["created_suite"]
        assert result["validation"]["suite_path"] == str(repo / "expectations" / "penguins.json")
        assert _run(result["run_id"])[0] is False
    assert git(repo, "status", "--porcelain") == ""
