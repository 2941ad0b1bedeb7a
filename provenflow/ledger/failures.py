"""What a database error means to the user: one line, the ledger's safe URL, the cause, what to do.

Installed on the engine (``handle_error``), so every statement of every caller is covered, and
the pool still invalidates a dead connection first: SQLAlchemy runs the handler before it
discards a disconnected connection, then raises the handler's error in place of its own.
Pre-ping failures are left alone: ``pool_pre_ping`` recovers from them by reconnecting.
"""

from __future__ import annotations

from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from provenflow.errors import LedgerConflict, LedgerError

# PostgreSQL SQLSTATE classes and codes (https://www.postgresql.org/docs/current/errcodes-appendix.html)
_LOST = ("08", "57P")  # connection exceptions; admin/crash shutdown, cannot connect now
_FULL = ("53100", "53200", "53300")  # disk full, out of memory, too many connections
_BUSY = ("55P03", "57014", "40P01", "40001")  # lock not available, statement timeout, deadlock, serialization


def translate(ctx: ExceptionContext, url: str) -> LedgerError | None:
    """The LedgerError to raise instead of ``ctx``'s exception, or None to leave it as it is."""
    if ctx.is_pre_ping or not isinstance(ctx.sqlalchemy_exception, DBAPIError):
        return None  # pre-ping reconnects by itself; a non-driver error is a bug to show as it is
    orig = ctx.original_exception
    reason = _reason(orig, url)
    where = f"the ledger at {safe_url(url)}"
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None) or ""
    if isinstance(ctx.sqlalchemy_exception, IntegrityError):
        return LedgerConflict(
            f"{where} refused a write: {reason}. Another process probably recorded the same thing at the "
            "same moment; run the command again"
        )
    if code in _FULL or code == "SQLITE_FULL":
        return LedgerError(
            f"{where} is out of resources: {reason}. Free disk space (or connections) on the database "
            "server, then run the command again"
        )
    if code in _BUSY or code in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return LedgerError(
            f"{where} is busy: {reason}. Another process held a lock too long; run the command again"
        )
    if ctx.is_disconnect or code.startswith(_LOST):
        return LedgerError(
            f"{where} lost its connection (the database server stopped or restarted): {reason}. A run is "
            "recorded only when its last transaction commits, so nothing half-written was kept; run the "
            "command again once the database answers"
        )
    if ctx.connection is None and ctx.dialect.name == "sqlite":
        return LedgerError(
            f"{where} cannot be opened: {reason}. Check that PROVENFLOW_LEDGER_URL (or the ledger block) "
            "names a provenflow SQLite ledger, or a new file, that this user can read and write"
        )
    if ctx.connection is None:  # failed to connect at all
        return LedgerError(
            f"{where} cannot be reached: {reason}. Check that the database server is running and that "
            "PROVENFLOW_LEDGER_URL (or the ledger block) names it, then run the command again"
        )
    return LedgerError(f"{where} failed: {reason}. Run with --debug to see the statement")


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparsable URL>"


def _reason(orig: BaseException, url: str) -> str:
    """The driver's message on one line, without the password even if a driver echoed it."""
    # libpq's tab-indented hints ("Is the server running…?") repeat what our advice says.
    kept = [line for line in str(orig).splitlines() if line.strip() and not line.startswith("\t")]
    text = " ".join(" ".join(kept).split()) or type(orig).__name__
    password = _password(url)
    if password:
        text = text.replace(password, "***")
    return text.rstrip(".?! ")


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except Exception:  # an unparsable URL has no password we could find either
        return None
