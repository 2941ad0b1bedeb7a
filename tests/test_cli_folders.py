"""data-run on a partitioned folder through the CLI: one version, its files recorded, a model trains on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.test_cli import pf, pf_json

pytestmark = pytest.mark.usefixtures("prefect_api")


def _write(root, region: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder = root / f"region={region}"
    folder.mkdir(parents=True)
    x = rng.normal(size=200)
    pd.DataFrame({"x": x, "y": (x > 0).astype(int)}).to_parquet(folder / "part-0.parquet", index=False)


def test_data_run_on_a_hive_folder_then_a_model_run_and_verify(project):
    root = project / "events"
    for i, region in enumerate(("north", "south")):
        _write(root, region, i)
    first = pf_json(project, "data-run", "--name", "events", "--source", "events")
    assert first["dataset"]["rows"] == 400 and first["dataset"]["columns"] == 3
    shown = pf_json(project, "runs", "show", first["run_id"][:8])
    files = {i["name"]: i["hash"] for i in shown["inputs"] if i["kind"] == "file"}
    assert sorted(files) == ["region=north/part-0.parquet", "region=south/part-0.parquet"]
    # The same rows cut into two files: the same version, not a new one.
    north = pd.read_parquet(root / "region=north" / "part-0.parquet")
    (root / "region=north" / "part-0.parquet").unlink()
    north.iloc[:50].to_parquet(root / "region=north" / "part-0.parquet", index=False)
    north.iloc[50:].to_parquet(root / "region=north" / "part-1.parquet", index=False)
    recut = pf_json(project, "data-run", "--name", "events", "--source", "events")
    assert recut["dataset"]["ref"] == first["dataset"]["ref"] and not recut["dataset"]["new"]
    _write(root, "west", 2)
    second = pf_json(project, "data-run", "--name", "events", "--source", "events/")
    assert second["dataset"]["rows"] == 600 and second["dataset"]["new"]
    model = pf_json(
        project, "model-run", "--dataset", "events@latest", "--target", "y",
        "--estimator", "sklearn.linear_model.LogisticRegression",
    )  # fmt: skip
    assert model["metrics"]
    # The model's lineage shows a few of a folder run's files, then how many more (before: every file
    # of every partition, ~270 lines for a 124-file folder).
    tree = pf(project, "lineage", "events@latest")
    assert tree.returncode == 0 and "… and 1 more file (" in tree.stdout, tree.stdout
    verified = pf(project, "verify")
    assert verified.returncode == 0, verified.stderr + verified.stdout
    # verify hashes every part, not only the manifest that names them.
    parts = [
        o["hash"]
        for o in pf_json(project, "runs", "show", second["run_id"][:8])["outputs"]
        if o["kind"] == "part"
    ]
    assert len(parts) == 4  # north (two files), south, west
    damaged = project / ".provenflow" / "store" / "objects" / parts[-1][:2] / parts[-1][2:]
    damaged.chmod(0o644)
    damaged.write_bytes(damaged.read_bytes() + b"x")
    broken = pf(project, "verify")
    assert broken.returncode != 0 and parts[-1][:12] in broken.stdout + broken.stderr


def test_data_run_on_an_empty_folder_is_one_line(project):
    (project / "empty").mkdir()
    result = pf(project, "data-run", "--name", "e", "--source", "empty")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "the folder holds no data file" in lines[0]
