"""Database errors reach the user as one LedgerError line: the ledger's URL without its password,
the driver's reason, and what to do. Real SQLite files and a real (absent or present) PostgreSQL."""

from __future__ import annotations

import sqlite3
import traceback

import pytest
from sqlalchemy import text

from provenflow.errors import LedgerConflict, LedgerError
from provenflow.ledger.db import HEAD_REVISION, Ledger
from tests.services import free_port

PASSWORD = "pw-marker-77"


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def test_nothing_listening_on_the_postgres_port():
    url = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{free_port()}/ledger"
    with pytest.raises(LedgerError) as exc:
        Ledger(url)
    assert _one_line(exc).startswith(
        f"the ledger at postgresql+psycopg://u:***@{url.split('@')[1]} cannot be reached: "
    )
    assert "Connection refused. Check that the database server is running" in str(exc.value)


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.write_bytes(b"not a sqlite file " * 64), "cannot be opened: file is not a database"),
        (lambda p: p.mkdir(), "cannot be opened: unable to open database file"),
    ],
)
def test_a_sqlite_path_that_is_not_a_ledger(tmp_path, make, expected):
    path = tmp_path / "ledger.db"
    make(path)
    with pytest.raises(LedgerError, match=expected) as exc:
        Ledger(f"sqlite:///{path}")
    _one_line(exc)


def test_a_sqlite_ledger_in_a_folder_that_cannot_exist(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LedgerError, match=r"cannot be created: Not a directory: '.*/file/sub'"):
        Ledger(f"sqlite:///{tmp_path / 'file' / 'sub' / 'ledger.db'}")


def test_a_conflicting_write_is_a_ledger_conflict(ledger_url):
    ledger = Ledger(ledger_url)
    insert = text(
        "INSERT INTO environments (hash, python, platform, packages) VALUES ('h', 'p', 'x', :packages)"
    )
    values = {"packages": f'["{PASSWORD}"]'}
    with ledger.transaction() as s:
        s.execute(insert, values)
    conflict = r"refused a write: .*run the command again"
    with pytest.raises(LedgerConflict, match=conflict) as exc, ledger.transaction() as s:
        s.execute(insert, values)
    _one_line(exc)
    # What --debug prints: the whole chain, with no statement parameters in it.
    assert PASSWORD not in "".join(traceback.format_exception(exc.value))
    ledger.dispose()


def test_a_ledger_written_by_a_newer_provenflow(ledger_url):
    Ledger(ledger_url).dispose()
    from provenflow.ledger import db

    with Ledger(ledger_url).transaction() as s:
        s.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    db._migrated.discard(ledger_url)  # as a new process would see it
    with pytest.raises(
        LedgerError, match=rf"revision '9999'.*newest is '{HEAD_REVISION}'.*Upgrade provenflow"
    ):
        Ledger(ledger_url)


def test_a_locked_sqlite_ledger_is_busy(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    holder = sqlite3.connect(tmp_path / "ledger.db")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with ledger.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA busy_timeout = 50")
            with pytest.raises(LedgerError, match=r"is busy: database is locked\. Another process") as exc:
                conn.execute(text("INSERT INTO environments VALUES ('h', 'p', 'x', '[]')"))
        _one_line(exc)
    finally:
        holder.rollback()
        holder.close()
        ledger.dispose()


def test_a_full_sqlite_ledger_says_so(tmp_path):
    """SQLITE_FULL, as on a full disk: the page limit stands in for the disk's end."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with ledger.engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
            big = text("INSERT INTO environments VALUES (:h, 'p', 'x', :packages)")
            with pytest.raises(
                LedgerError, match=r"is out of resources: database or disk is full\. Free"
            ) as exc:
                conn.execute(big, {"h": "h", "packages": '["' + "x" * 200_000 + '"]'})
                conn.commit()
        _one_line(exc)
    finally:
        ledger.dispose()
