"""dataset_versions.fingerprint (migration 0012): a folder's earlier version is found by an indexed
column, and a ledger upgraded from 0011 keeps finding the versions recorded before (filled from their
profiles)."""

from __future__ import annotations

import json

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from provenflow.data.versioning import _version_of
from provenflow.ledger import models as m
from provenflow.ledger.db import MIGRATIONS
from provenflow.workspace import Workspace, close_all


def test_an_upgraded_ledger_finds_a_folders_earlier_version_by_its_fingerprint(ledger_url, tmp_path):
    engine = create_engine(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011")
        insert = text(
            "INSERT INTO dataset_versions (name, hash, version, uri, format, size, profile, created_at) "
            "VALUES (:name, :hash, :version, 'x', 'parquet', 1, :profile, CURRENT_TIMESTAMP)"
        )
        for name, digit, profile in (
            ("events", "a", {"rows": 1, "fingerprint": "f" * 64}),
            ("events", "b", {"rows": 1}),  # one file: no fingerprint
            ("other", "c", {"rows": 1, "fingerprint": "e" * 64}),
            ("events", "d", None),
        ):
            conn.execute(insert, {"name": name, "hash": digit * 64, "version": digit * 12,
                                  "profile": json.dumps(profile) if profile else None})  # fmt: skip
    engine.dispose()

    workspace = Workspace.open(ledger_url, str(tmp_path / "store"))  # migrates to head
    try:
        indexes = {i["name"] for i in inspect(workspace.ledger.engine).get_indexes("dataset_versions")}
        assert "ix_dataset_versions_name_fingerprint" in indexes
        with workspace.ledger.reader() as session:
            filled = dict(session.query(m.DatasetVersion.hash, m.DatasetVersion.fingerprint))
        assert filled == {"a" * 64: "f" * 64, "b" * 64: None, "c" * 64: "e" * 64, "d" * 64: None}
        assert _version_of(workspace, "events", "f" * 64).hex == "a" * 64
        assert _version_of(workspace, "events", "e" * 64) is None  # another dataset's table
        # A version recorded now keeps its profile's fingerprint in the column; the latest one is found.
        with workspace.ledger.transaction() as session:
            row = session.query(m.DatasetVersion).filter_by(hash="b" * 64).one()
            session.add(
                m.DatasetVersion(name="events", hash="9" * 64, version="9" * 12, uri="x", format="parquet",
                                 size=1, profile={"fingerprint": "f" * 64}, created_at=row.created_at)
            )  # fmt: skip
        assert _version_of(workspace, "events", "f" * 64).hex == "9" * 64
    finally:
        close_all()
