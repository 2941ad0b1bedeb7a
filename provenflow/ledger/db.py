"""Opening the ledger: engine, migrations, one-transaction sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from provenflow.errors import ConfigError, LedgerError
from provenflow.ledger.failures import safe_url, translate

__all__ = ["HEAD_REVISION", "Ledger", "safe_url"]

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; a ledger at this revision needs no Alembic run (saves ~100 ms per open).
HEAD_REVISION = "0012"
# Any fixed 64-bit number: the PostgreSQL advisory lock that makes migrations one at a time.
# Advisory locks are per database, so two ledgers on one server do not wait for each other.
_MIGRATION_LOCK_KEY = 0x70726F76656E666C  # "provenfl"

_migrated: set[str] = set()
_lock = threading.Lock()


class Ledger:
    """The metadata database. ``with ledger.transaction() as s:`` is the one way to write."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(
                f"the ledger URL {safe_url(url)!r} is not a database URL; expected e.g. "
                "sqlite:///path/ledger.db or postgresql+psycopg://user@host/db"
            ) from None
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # Statement parameters stay out of exception text (--debug tracebacks, Prefect's flow-run logs).
        kwargs: dict = {"hide_parameters": True}
        if parsed.drivername.startswith("sqlite"):
            if parsed.database and parsed.database != ":memory:":
                try:
                    Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise LedgerError(
                        f"the ledger at {safe_url(url)} cannot be created: {exc.strerror}: "
                        f"{exc.filename!r}. Point PROVENFLOW_LEDGER_URL (or the ledger block) at a file "
                        "in a folder this user can write"
                    ) from None
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(
                f"the ledger URL {safe_url(url)!r} names a database driver that is not installed ({exc}); "
                "use sqlite:///… or postgresql+psycopg://…"
            ) from None
        if parsed.drivername.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        event.listen(self.engine, "handle_error", lambda ctx: translate(ctx, url))
        self._sqlite_file = parsed.database if parsed.drivername.startswith("sqlite") else None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrate()

    def __repr__(self) -> str:
        return f"Ledger({safe_url(self.url)!r})"

    def _migrate(self) -> None:
        """Bring the schema to HEAD_REVISION, one process at a time.

        Many processes may open an empty ledger at once (four data-runs started together): each
        would create alembic_version and the losers die on a duplicate key. So the upgrade runs
        under a lock held until it commits (an advisory transaction lock on PostgreSQL, a file
        lock next to a SQLite file), and the revision is read again once the lock is ours.
        """
        with _lock:
            if self.url in _migrated:
                return
            with self.engine.connect() as conn:
                current = _current_revision(conn)
                conn.rollback()
                if current != HEAD_REVISION:
                    with self._migration_lock(conn):
                        current = _current_revision(conn)
                        if current != HEAD_REVISION:
                            _upgrade(conn, current, self.url)
                        conn.commit()
            _migrated.add(self.url)

    @contextmanager
    def _migration_lock(self, conn: Connection) -> Iterator[None]:
        if conn.dialect.name == "postgresql":
            # Released by the commit (or rollback) that ends the upgrade's transaction.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            yield
        elif self._sqlite_file and self._sqlite_file != ":memory:":
            import fcntl  # POSIX only, and only needed here

            with open(f"{self._sqlite_file}.migrate.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the process dies
                yield
        else:
            yield  # a private in-memory database, or a dialect that serializes DDL itself

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reader(self) -> Iterator[Session]:
        with self._sessions() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _current_revision(conn) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(conn: Connection, current: str | None, url: str) -> None:
    from alembic import command
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    if current is not None:
        try:
            ScriptDirectory.from_config(cfg).get_revision(current)
        except CommandError:
            raise LedgerError(
                f"the ledger at {safe_url(url)} is at schema revision {current!r}, which this provenflow "
                f"does not know (its newest is {HEAD_REVISION!r}): a newer provenflow wrote it. Upgrade "
                "provenflow here to the version that wrote it"
            ) from None
    command.upgrade(cfg, "head")
