"""Opening the ledger: engine, migrations, one-transaction sessions."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from provenflow.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration; a ledger at this revision needs no Alembic run (saves ~100 ms per open).
HEAD_REVISION = "0006"

_migrated: set[str] = set()
_lock = threading.Lock()


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


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
        kwargs: dict = {}
        if parsed.drivername.startswith("sqlite"):
            if parsed.database:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
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
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._migrate()

    def __repr__(self) -> str:
        return f"Ledger({safe_url(self.url)!r})"

    def _migrate(self) -> None:
        with _lock:
            if self.url in _migrated:
                return
            try:
                with self.engine.connect() as conn:
                    current = _current_revision(conn)
                    if current != HEAD_REVISION:
                        _upgrade(conn)
                        conn.commit()
            except OperationalError as exc:
                raise ConfigError(
                    f"cannot open the ledger at {safe_url(self.url)}: {exc.orig}. "
                    "Check the URL (PROVENFLOW_LEDGER_URL or the ledger block) and that the database is up."
                ) from None
            _migrated.add(self.url)

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


def _upgrade(conn) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")
