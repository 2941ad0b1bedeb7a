"""`provenflow feedback` and `pf.feedback`: labels for rows a real model server answered over HTTP."""

from __future__ import annotations

import json
import os
import subprocess

import httpx
import pandas as pd

import provenflow as pf
from provenflow.serving.feedback import read_feedback
from tests.services import CLI
from tests.serving.conftest import bundles, recorded, records_of, start_server  # noqa: F401 (fixtures)
from tests.serving.test_limits import feature_names


def cli(recorded, *args: str) -> subprocess.CompletedProcess:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    env.update(PROVENFLOW_LEDGER_URL=recorded.workspace.ledger.url, PROVENFLOW_STORE_URL=recorded.store_url)
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def served_ids(bundles, recorded, rows: int) -> list[str]:  # noqa: F811
    """Rows answered by a real server whose prediction log is the workspace's store (as `provenflow serve`)."""
    server = start_server(bundles["forest"], recorded.store_url)
    try:
        records = records_of(recorded.frame.head(rows), feature_names(bundles["forest"]))
        answer = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["ids"]
    finally:
        server.stop()  # flushes the log: its rows are in a segment now


def test_cli_and_python_api_store_labels_and_count_unknown_ids(bundles, recorded, tmp_path):  # noqa: F811
    ids = served_ids(bundles, recorded, 6)
    rid = ids[0].rsplit(":", 1)[0]
    source = tmp_path / "labels.csv"
    pd.DataFrame({"rid": [rid] * 4 + ["nobody"], "n": [0, 1, 2, 3, 0],
                  "truth": ["Adelie", "Adelie", "Gentoo", "Adelie", "Adelie"]}).to_csv(source, index=False)  # fmt: skip
    done = cli(recorded, "feedback", "penguins-forest@latest", "--source", str(source), "--request-id-column", "rid",
               "--row-column", "n", "--label-column", "truth", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["stored"] == 5 and result["unknown"] == 1 and result["unknown_ids"] == ["nobody:0"]
    people = cli(recorded, "feedback", "penguins-forest@1", "--source", str(source), "--request-id-column", "rid",
                 "--row-column", "n", "--label-column", "truth")  # fmt: skip
    assert people.returncode == 0 and "stored 5 labels" in people.stdout
    assert "1 ids have no logged prediction" in people.stderr and "nobody:0" in people.stderr

    later = pf.feedback(
        "penguins-forest@1", [{"id": ids[0], "label": "Chinstrap"}], workspace=recorded.workspace
    )
    assert later.stored == 1 and later.unknown == 0
    # A second call: importing the module behind it must not replace `pf.feedback` on the package.
    again = pf.feedback("penguins-forest@1", [{"id": ids[1], "label": "Gentoo"}], workspace=recorded.workspace)
    assert again.stored == 1 and callable(pf.feedback)
    latest = read_feedback(recorded.store_url, "penguins-forest", 1).set_index(["request_id", "row"])["label"]
    assert latest[(rid, 0)] == "Chinstrap" and latest[(rid, 2)] == "Gentoo"
    history = read_feedback(recorded.store_url, "penguins-forest", 1, history=True)
    mine = history[(history["request_id"] == rid) & (history["row"] == 0)]
    assert mine["label"].tolist() == ["Adelie", "Adelie", "Chinstrap"]
    assert set(mine["source"]) == {"cli", "python"}


def test_bad_label_files_get_a_one_line_error(recorded, tmp_path):  # noqa: F811
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("id,label\n")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("request,truth\nabc,1\n")
    bad_row = tmp_path / "bad-row.csv"
    bad_row.write_text("request_id,row,label\nabc,first,Adelie\n")
    bad_id = tmp_path / "bad-id.csv"
    bad_id.write_text("id,label\nabc,Adelie\n")
    cases = {
        empty: "is empty",
        header_only: "the labels are empty",
        wrong: "no label column 'label'",
        bad_row: "not a row number",
        bad_id: "not a row id",
        tmp_path / "missing.csv": "no labels file",
        tmp_path / "labels.json": "neither CSV nor Parquet",
    }
    for path, expected in cases.items():
        done = cli(recorded, "feedback", "penguins-forest@1", "--source", str(path))
        assert done.returncode == 1, (path, done.stdout, done.stderr)
        assert done.stderr.startswith("Error:") and expected in done.stderr, (path, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
