"""Migration 0009: a ledger at 0008 upgrades in place and keeps quality reports on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime


def test_migration_0009_upgrades_0008_and_stores_a_quality_report(ledger_url, project):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from provenflow.ledger import db
    from provenflow.ledger import models as m

    engine = create_engine(ledger_url.replace("postgresql://", "postgresql+psycopg://"))
    cfg = Config()
    cfg.set_main_option("script_location", str(db.MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
        conn.execute(
            text("INSERT INTO model_versions (name, version, hash, uri, format, size, created_at) "
                 "VALUES ('m', 1, :h, 'x', 'sklearn-pickle-v5', 1, CURRENT_TIMESTAMP)"),
            {"h": "ab" * 32},
        )  # fmt: skip
    engine.dispose()
    ledger = db.Ledger(ledger_url)
    now = datetime.now(UTC)
    with ledger.transaction() as session:
        version = session.query(m.ModelVersion).one()
        session.add(m.QualityReport(
            model_version_id=version.id, window_start=now, window_end=now, labelled_rows=300, status="degraded",
            degraded=True, metric="accuracy", realized=0.42, ci_low=0.37, ci_high=0.48, training=0.9,
            windows=[{"labelled": 300, "metrics": {"accuracy": {"value": 0.42, "low": None, "high": None}}}],
            details={"estimates": None}, created_at=now,
        ))  # fmt: skip
    with ledger.reader() as session:
        (report,) = session.query(m.QualityReport).all()
        assert report.model_version.ref == "m@1" and report.degraded and report.ci_high == 0.48
        assert report.windows[0]["metrics"]["accuracy"]["low"] is None
    ledger.dispose()
