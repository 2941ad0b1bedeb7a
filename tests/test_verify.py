"""A damaged store object is reported, shown where the object is shown, and repaired by re-running
the run that stored it (the issue's case 5: one byte appended to a dataset's object)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import PENGUINS
from tests.test_cli import pf, pf_json

pytestmark = pytest.mark.usefixtures("prefect_api")


def _object(project: Path, digest: str) -> Path:
    return project / ".provenflow" / "store" / "objects" / digest[:2] / digest[2:]


def test_a_corrupt_dataset_object_is_reported_shown_and_repaired(project):
    shutil.copy(PENGUINS, project / "penguins.csv")
    first = pf_json(project, "data-run", "--name", "penguins", "--source", "penguins.csv")["dataset"]
    pf_json(project, "model-run", "--dataset", "penguins@latest", "--target", "species",
            "--estimator", "sklearn.linear_model.LogisticRegression", "--param", "max_iter=500")  # fmt: skip
    assert pf(project, "verify").returncode == 0
    path = _object(project, first["hash"])
    os.chmod(path, 0o644)
    with open(path, "ab") as fh:
        fh.write(b"\0")

    verify = pf(project, "verify", "--json")
    assert verify.returncode == 1
    (damage,) = json.loads(verify.stdout)["damaged"]
    assert damage["hash"] == first["hash"] and damage["problem"] == "corrupt"
    assert f"dataset {first['ref']}" in damage["used_by"]

    shown = pf(project, "datasets", "show", first["ref"])
    assert shown.returncode == 0 and shown.stderr.startswith("Damaged: the stored object of dataset")
    assert pf_json(project, "datasets", "show", first["ref"])["damage"] == "corrupt"
    graph = pf_json(project, "lineage", "penguins-species@latest")
    (dataset_node,) = [n for n in graph["upstream"][0]["inputs"] if n["kind"] == "dataset"]
    assert dataset_node["damage"] == "corrupt" and graph["node"]["damage"] is None
    assert "DAMAGED: object corrupt" in pf(project, "lineage", first["ref"]).stdout

    refused = pf(project, "model-run", "--dataset", "penguins@latest", "--target", "species",
                 "--estimator", "sklearn.linear_model.LogisticRegression")  # fmt: skip
    assert refused.returncode == 1 and "corrupt" in refused.stderr

    again = pf(project, "data-run", "--name", "penguins", "--source", "penguins.csv", "--json")
    assert again.returncode == 0, again.stderr
    dataset = json.loads(again.stdout)["dataset"]
    assert dataset["hash"] == first["hash"] and dataset["new"] is False and dataset["repaired"] is True
    assert pf(project, "verify").returncode == 0
    assert pf_json(project, "datasets", "show", first["ref"])["damage"] is None


def test_a_missing_object_is_reported(project):
    shutil.copy(PENGUINS, project / "penguins.csv")
    first = pf_json(project, "data-run", "--name", "penguins", "--source", "penguins.csv")["dataset"]
    _object(project, first["hash"]).unlink()
    verify = pf(project, "verify")
    assert verify.returncode == 1 and "missing" in verify.stdout and first["ref"] in verify.stdout
    assert pf_json(project, "datasets", "show", first["ref"])["damage"] == "missing"
