"""A deployment's data-run reads local files only under the worker's allowed roots
(PROVENFLOW_SOURCE_ROOTS, default the project folder), links resolved first (issue 19, item 6).

Whoever can launch a deployment from the Prefect UI chooses its `source`; the worker must not hand
them its own files. The flow runs for real against the session's Prefect server; the deployment is
named through Prefect's runtime override, as a worker's run would carry it."""

from __future__ import annotations

import shutil

import pytest

from provenflow.data.roots import check_local_source
from provenflow.errors import ConfigError
from tests.conftest import PENGUINS

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def deployed(monkeypatch):
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "00000000-0000-0000-0000-000000000019")


def test_a_link_to_a_worker_file_is_refused_in_one_line(project, deployed, tmp_path):
    from provenflow.flows.data_run import data_run

    secret = tmp_path / "outside" / "shadow.csv"
    secret.parent.mkdir()
    secret.write_text("root,hash\nroot,$6$secret\n")
    (project / "data.csv").symlink_to(secret)
    with pytest.raises(ConfigError) as refused:
        data_run(name="stolen", source=str(project / "data.csv"))
    message = str(refused.value)
    assert "outside the folders this worker reads sources from" in message and "\n" not in message
    assert "PROVENFLOW_SOURCE_ROOTS" in message
    (project / "more").mkdir()
    (project / "more" / "b.csv").symlink_to(secret)
    for source in (
        str(project / "*.csv"),
        str(project / "more"),
        "/etc/passwd",
        "file:///etc/passwd",
        "simplecache::file:///etc/passwd",
        "../x.csv",
    ):
        with pytest.raises(ConfigError):
            data_run(name="stolen", source=source)
    from provenflow.workspace import Workspace

    with Workspace.default().ledger.reader() as session:
        from provenflow.ledger.models import Run

        assert session.query(Run).count() == 0, "nothing was recorded for a refused source"


def test_a_file_under_the_roots_is_read(project, deployed):
    from provenflow.flows.data_run import data_run

    shutil.copy(PENGUINS, project / "penguins.csv")
    result = data_run(name="penguins", source=str(project / "penguins.csv"))
    assert result["dataset"]["rows"] > 300


def test_roots_setting_and_remote_urls(tmp_path, monkeypatch):
    allowed = tmp_path / "data"
    allowed.mkdir()
    (allowed / "a.csv").write_text("x\n1\n")
    monkeypatch.setenv("PROVENFLOW_SOURCE_ROOTS", f"{allowed},/nonexistent")
    from provenflow.settings import get_settings

    get_settings.cache_clear()
    try:
        roots = get_settings().source_roots_or_default()
        check_local_source(str(allowed / "a.csv"), roots)
        check_local_source("https://example.org/a.csv", roots)  # remote: not a worker's file
        with pytest.raises(ConfigError, match="outside"):
            check_local_source(str(allowed / ".." / "data2" / "a.csv"), roots)
    finally:
        get_settings.cache_clear()
