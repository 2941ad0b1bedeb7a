"""provenflow gc: staging files and unreferenced objects older than the grace period go; what the
ledger refers to, and anything young, stays. On SQLite and PostgreSQL ledgers."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import pytest

from provenflow.digest import Digest
from provenflow.ledger import models as m
from provenflow.storage import gc


def _age(path: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _record_dataset(workspace, digest: Digest) -> None:
    with workspace.ledger.transaction() as session:
        session.add(
            m.DatasetVersion(
                name="kept", hash=digest.hex, version=digest.short, uri=workspace.store.uri(digest),
                format="parquet", size=4, created_at=datetime.now(UTC),
            )
        )  # fmt: skip


def test_gc_removes_old_orphans_and_staging_files_only(workspace):
    store = workspace.store
    kept = store.put_bytes(b"kept").digest
    _record_dataset(workspace, kept)
    orphan = store.put_bytes(b"orphan of a killed run").digest
    young = store.put_bytes(b"a run in flight wrote this").digest
    os.makedirs(store.tmp_dir, exist_ok=True)
    tmp = os.path.join(store.tmp_dir, ".tmp-killed")
    with open(tmp, "wb") as fh:
        fh.write(b"x" * 1000)
    legacy_tmp = os.path.join(os.path.dirname(store.path(kept)), ".tmp-legacy")  # where old versions staged
    with open(legacy_tmp, "wb") as fh:
        fh.write(b"y" * 10)
    for path in (store.path(kept), store.path(orphan), tmp, legacy_tmp):
        _age(path, 7200)

    dry = gc.collect(workspace, grace_seconds=3600, dry_run=True)
    assert {g.path for g in dry.removed} == {store.path(orphan), tmp, legacy_tmp}
    assert store.exists(orphan) and os.path.exists(tmp)

    report = gc.collect(workspace, grace_seconds=3600)
    assert sorted((g.kind, g.digest or "") for g in report.removed) == [
        ("orphan", orphan.hex),
        ("tmp", ""),
        ("tmp", ""),
    ]
    assert report.bytes_freed == len(b"orphan of a killed run") + 1000 + 10
    assert report.kept_young == 1
    assert store.verify(kept) and store.verify(young) and not store.exists(orphan)
    assert not os.path.exists(tmp) and not os.path.exists(legacy_tmp)

    everything = gc.collect(workspace, grace_seconds=0)
    assert [g.digest for g in everything.removed] == [young.hex]
    assert store.verify(kept)


def test_an_old_orphan_stored_again_by_a_run_is_spared(workspace):
    store = workspace.store
    digest = store.put_bytes(b"stored long ago, unreferenced").digest
    _age(store.path(digest), 7200)
    store.put_bytes(b"stored long ago, unreferenced")  # a run about to record it
    assert gc.collect(workspace, grace_seconds=3600).removed == []
    assert store.verify(digest)


@pytest.mark.parametrize(
    ("text", "seconds"), [("0", 0), ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1.5h", 5400)]
)
def test_parse_duration(text, seconds):
    assert gc.parse_duration(text) == seconds


def test_parse_duration_says_what_it_takes():
    with pytest.raises(ValueError, match="not a duration such as 0, 90s"):
        gc.parse_duration("soon")


def test_an_old_unreferenced_object_of_a_run_still_running_is_spared(workspace):
    """A long run stored its object over an hour ago and has not recorded it yet."""
    import provenflow

    run = provenflow.start("long", workspace=workspace)
    digest = workspace.store.put_bytes(b"pending output of a long run").digest
    with workspace.ledger.transaction() as session:  # as if the run had started two hours ago
        session.get(m.Run, run.id).started_at = datetime.fromtimestamp(time.time() - 7200, UTC)
    _age(workspace.store.path(digest), 3700)
    assert gc.collect(workspace, grace_seconds=3600).removed == []
    run.end(RuntimeError("gave up"))  # a failed run takes back what it stored
    assert not workspace.store.exists(digest)
