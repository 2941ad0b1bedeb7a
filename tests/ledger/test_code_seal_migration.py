"""Migration 0011: runs get code_entry and code_seal (old runs stay unsealed, so `reproduce` refuses them
until `provenflow runs seal`), and model seals grow to hold an Ed25519 signature."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from provenflow.ledger import db
from provenflow.ledger import models as m
from provenflow.modeling import signing


def test_a_ledger_at_0010_upgrades_with_its_runs_unsealed(ledger_url, project):
    engine = create_engine(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")
        conn.execute(text(
            "INSERT INTO runs (id, kind, flow, name, state, parameters, started_at) "
            "VALUES ('r1', 'custom', 'python', 'old', 'completed', '{}', CURRENT_TIMESTAMP)"
        ))  # fmt: skip
        conn.execute(
            text("INSERT INTO model_versions (name, version, hash, uri, format, size, created_at) "
                 "VALUES ('old', 1, :h, 'x', 'sklearn-pickle-v5', 1, CURRENT_TIMESTAMP)"),
            {"h": "ab" * 32},
        )  # fmt: skip
    engine.dispose()
    ledger = db.Ledger(ledger_url)
    key = signing.Ed25519Key.generate("test")
    with ledger.transaction() as session:
        run = session.get(m.Run, "r1")
        assert run.code_seal is None and run.code_entry is None
        version = session.query(m.ModelVersion).one()
        version.seal = signing.seal(signing.ModelIdentity.of(version), key)  # 149 characters
    with ledger.reader() as session:
        assert len(session.query(m.ModelVersion).one().seal) > 128
    ledger.dispose()
