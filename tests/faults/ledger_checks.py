"""What every fault test asserts after the fault and a `provenflow gc --grace 0`: the ledger and
the store agree, and nothing is left behind."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from provenflow.ledger import models as m
from provenflow.ledger.db import Ledger
from provenflow.storage.references import referenced_hashes
from provenflow.storage.store import ContentStore
from provenflow.storage.verify import verify_store
from provenflow.workspace import Workspace


def staging_files(store_root: Path) -> list[Path]:
    return sorted(store_root.rglob(".tmp-*")) if store_root.exists() else []


def object_files(store_root: Path) -> dict[str, Path]:
    objects = store_root / "objects"
    found = {}
    if objects.exists():
        for path in objects.glob("??/*"):
            if not path.name.startswith(".tmp-"):
                found[path.parent.name + path.name] = path
    return found


def assert_consistent(ledger_url: str, store_root: Path, after_gc: bool = True) -> None:
    """Every recorded version has an intact object and a completed run; no run is left running;
    after gc: no staging file and no object the ledger does not refer to."""
    workspace = Workspace(Ledger(ledger_url), ContentStore(str(store_root)))
    try:
        report = verify_store(workspace)
        assert report.damaged == [], f"damaged objects: {report.damaged}"
        with workspace.ledger.reader() as session:
            running = session.scalars(select(m.Run).where(m.Run.state == "running")).all()
            assert running == [], f"runs left running: {[(r.id, r.pid) for r in running]}"
            for version in [
                *session.scalars(select(m.DatasetVersion)),
                *session.scalars(select(m.ModelVersion)),
            ]:
                assert version.run_id is None or session.get(m.Run, version.run_id).state == "completed", (
                    version.ref
                )
            referenced = referenced_hashes(session)
        if after_gc:
            assert staging_files(store_root) == [], "staging files left after gc"
            orphans = set(object_files(store_root)) - referenced
            assert orphans == set(), f"objects no ledger row refers to, after gc: {orphans}"
    finally:
        workspace.ledger.dispose()
