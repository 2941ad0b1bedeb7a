"""A full disk under the prediction log's write-ahead files: refuse (503), keep every answered row.

A 256 KB tmpfs holds the write-ahead files. A real process appends requests until the disk is
full, notes which appends returned (the server would have answered those), and is killed with
SIGKILL; recovery must then find every one of them, and no part of the refused one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem

from provenflow.serving.predictlog import log_folder, read_predictions, recover
from tests.conftest import REPO
from tests.services import unavailable

WRITER = """
import json, os, signal, sys
import numpy as np
from provenflow.serving.inputs import Batch, Feature
from provenflow.serving.predictlog import PredictionLog, PredictionLogFull
from provenflow.serving.runtime import Predictions

store, wal_dir = sys.argv[1], sys.argv[2]
features = (Feature("x", "numeric"), Feature("island", "categorical"))
log = PredictionLog(store, "m", 1, "ab" * 32, features, ["a", "b"], flush_seconds=600, wal_dir=wal_dir).start()
n = 100
batch = Batch({"x": np.arange(n, dtype=np.float64), "island": np.array(["Dream"] * n, dtype=object)}, n)
predictions = Predictions(np.array(["b"] * n, dtype=object), np.tile([0.25, 0.75], (n, 1)))
answered = []
for i in range(10_000):
    try:
        log.append(f"r{i}", batch, predictions)
    except PredictionLogFull as exc:
        print(json.dumps({"answered": answered, "error": str(exc)}), flush=True)
        break
    answered.append(f"r{i}")
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        unavailable(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_refuses_then_recovery_keeps_every_answered_row(tiny_disk, tmp_path):
    store = tmp_path / "store"
    wal_dir = tiny_disk / "wal"
    run = subprocess.run(
        [sys.executable, "-c", WRITER, str(store), str(wal_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == -9, run.stderr
    report = json.loads(run.stdout)
    assert "No space left on device" in report["error"] and len(report["answered"]) > 10
    recover(LocalFileSystem(), log_folder(str(store), "m", 1), str(wal_dir))
    frame, skipped = read_predictions(str(store), "m", 1)
    assert skipped == [] and sorted(frame["request_id"].unique()) == sorted(report["answered"])
    assert (frame.groupby("request_id").size() == 100).all()
    assert list(Path(wal_dir).glob("*.wal")) == []
