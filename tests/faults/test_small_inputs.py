"""Small hostile inputs of issue 19, item 7: .json duplicate keys and deep nesting (one line each)."""

from __future__ import annotations

import pytest

from provenflow.errors import DataError


def ingest(path, tmp_path):
    from provenflow.data import ingest as ingesting

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ingesting.ingest(str(path), str(work), None)


def test_json_duplicate_keys_are_refused_like_jsonl(tmp_path):
    (tmp_path / "dup.json").write_text('[{"a": 1, "b": 2}, {"a": 3, "a": 4, "b": 5}]')
    with pytest.raises(DataError) as refused:
        ingest(tmp_path / "dup.json", tmp_path)
    assert "'a'" in str(refused.value) and "twice" in str(refused.value) and "\n" not in str(refused.value)


def test_deep_nested_json_is_one_line(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError) as refused:
        ingest(tmp_path / "deep.json", tmp_path)
    assert "nest" in str(refused.value) and "\n" not in str(refused.value)


def test_gc_collects_staging_files_left_under_feedback(workspace):
    import os
    import time
    from pathlib import Path

    from provenflow.storage import gc

    folder = Path(workspace.store.root) / "feedback" / "m" / "1"
    folder.mkdir(parents=True)
    left = [folder / f".tmp-2026_{i}.parquet" for i in range(11)]
    kept = folder / "20261206T000000000000Z_abc.parquet"  # a segment: never gc's
    for path in [*left, kept]:
        path.write_bytes(b"x" * 10)
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    report = gc.collect(workspace, grace_seconds=3600)
    assert sorted(g.path for g in report.removed if g.kind == "tmp") == sorted(str(p) for p in left)
    assert not any(p.exists() for p in left) and kept.exists()


def test_gc_dry_run_lists_the_runs_it_would_mark_crashed(project):
    import json
    import os
    import socket
    import subprocess
    import sys
    import uuid
    from datetime import UTC, datetime

    from provenflow.ledger import models as m
    from provenflow.tracking import crashes
    from provenflow.workspace import Workspace
    from tests.services import CLI

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = crashes.process_identity(child.pid)
    child.wait()
    run_id = str(uuid.uuid4())
    workspace = Workspace.default()
    with workspace.ledger.transaction() as session:
        session.add(
            m.Run(
                id=run_id, kind="data", flow="data-run", name="x", state="running", parameters={},
                host=socket.gethostname(), pid=child.pid, process=identity, started_at=datetime.now(UTC),
            )
        )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    done = subprocess.run([CLI, "gc", "--dry-run", "--json"], cwd=project, capture_output=True, text=True,
                          env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [c["id"] for c in json.loads(done.stdout)["crashed_runs"]] == [run_id]
    with workspace.ledger.reader() as session:
        assert session.get(m.Run, run_id).state == "running", "a dry run marks nothing"


def test_a_data_run_against_a_prefect_server_that_is_not_running_is_one_line(project):
    import os
    import subprocess

    from tests.conftest import PENGUINS
    from tests.services import CLI, free_port

    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVENFLOW_", "PREFECT_API"))}
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"
    done = subprocess.run([CLI, "data-run", "--name", "p", "--source", str(PENGUINS)], cwd=project,
                          capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr[-3000:]
    assert f"127.0.0.1:{port}" in lines[0] and "provenflow up" in lines[0]
