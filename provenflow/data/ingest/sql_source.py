"""SQL sources as Arrow record batches: a query (or a whole table) over any SQLAlchemy URL.

Rows are fetched with a server-side cursor (``stream_results``) a batch at a time, so memory stays
flat however large the table. The query is wrapped in ``ORDER BY`` every column: a database may
return the rows of an unordered query in another order on the next run (PostgreSQL's synchronised
scans do), and the canonical Parquet, so the version, depends on the order. Ordering rather than an
order-blind hash keeps the stored table in one reproducible order, at the cost of a sort in the
database. A ``--table`` with a primary key is ordered by that key alone: unique, so the order is as
fixed, and the database reads it through the key's index instead of sorting every column (a table
whose key is its leading columns, an ``id`` first, gets the same order, so the same version, as before). The password comes from CREDENTIALS (a Secret block) or the driver's environment
(libpq's PGPASSWORD or ~/.pgpass), never from the URL that is recorded.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

from provenflow.data import parquet_types
from provenflow.data.credentials import Credentials, split_url
from provenflow.data.ingest.names import check_names
from provenflow.data.ingest.widening import Widen, join_types
from provenflow.errors import DataError
from provenflow.redact import redact


def check_query(query: str | None, table: str | None) -> None:
    if bool(query) == bool(table):
        raise DataError("a SQL source needs exactly one of --query 'SELECT …' or --table NAME")


def _select(engine, query: str | None, table: str | None) -> str:
    """The SELECT to run: QUERY, or every row of TABLE (``schema.table`` allowed), quoted for the database."""
    check_query(query, table)
    if query:
        return query.strip().rstrip(";").strip()
    quote = engine.dialect.identifier_preparer.quote
    return "SELECT * FROM " + ".".join(quote(part) for part in table.split("."))


def shown_url(source: str) -> str:
    """The URL as it may be printed and recorded: no user-info password, whatever the form."""
    return redact(split_url(source)[0])


def sql_batches(
    source: str,
    query: str | None,
    table: str | None,
    credentials: Credentials | None,
    batch_rows: int,
    types: dict[str, pa.DataType],
    converted: dict[str, str],
) -> Iterator[pa.RecordBatch]:
    """The rows of QUERY (or TABLE), ordered by every column (a TABLE's primary key), as batches of BATCH_ROWS; a column
    whose type must widen past the first batch (NULLs then numbers, integers then decimals) raises Widen."""
    import sqlalchemy as sa

    engine = _engine(source, credentials)
    try:
        inner = f"({_select(engine, query, table)}) AS provenflow_source"
        with engine.connect() as conn:
            conn = _read_only(conn)
            names = list(conn.execute(sa.text(f"SELECT * FROM {inner} LIMIT 0")).keys())
            check_names(shown_url(source), names)
            order = _order_by(conn, names, table)
            streaming = conn.execution_options(stream_results=True, max_row_buffer=batch_rows)
            result = streaming.execute(sa.text(f"SELECT * FROM {inner} ORDER BY {order}"))
            for rows in result.partitions(batch_rows):
                yield _batch(names, rows, types, converted)
    except (Widen, DataError):
        raise
    except sa.exc.SQLAlchemyError as exc:
        raise _sql_error(source, exc, credentials) from None
    finally:
        engine.dispose()


def _order_by(conn, names: list[str], table: str | None) -> str:
    """TABLE's primary key columns when it has one (by position in the result), else every column."""
    key: list[str] = []
    if table:
        import sqlalchemy as sa

        schema, _, name = table.rpartition(".")
        try:
            key = (
                sa.inspect(conn).get_pk_constraint(name, schema=schema or None).get("constrained_columns")
                or []
            )
        except (sa.exc.SQLAlchemyError, NotImplementedError):
            key = []  # no reflection for this database or table: every column, as for a query
    if key and all(column in names for column in key):
        return ", ".join(str(names.index(column) + 1) for column in key)
    return ", ".join(str(i + 1) for i in range(len(names)))


def _read_only(conn):
    """The connection in a read-only transaction where the database has one: a source is only read,
    and a query (typed on the CLI, in a deployment's form, or a retrain's sealed record) that would
    write (``SELECT setval(…)``, a function with side effects) is refused by the database itself."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(postgresql_readonly=True)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA query_only = ON")
    return conn


def _engine(source: str, credentials: Credentials | None):
    import sqlalchemy as sa

    url_text, in_url = split_url(source)
    credentials = credentials or in_url
    try:
        url = sa.engine.make_url(url_text)
        if credentials is not None:
            url = url.set(username=credentials.username, password=credentials.password)
        return sa.create_engine(url, pool_pre_ping=False)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise DataError(f"{shown_url(source)!r} is not a SQLAlchemy URL it can connect with: {exc}") from None


def _sql_error(source: str, exc: Exception, credentials: Credentials | None) -> DataError:
    """One line: the database's own first line, with any password in it masked."""
    orig = getattr(exc, "orig", None) or exc
    detail = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    if credentials is not None and credentials.password:
        detail = detail.replace(credentials.password, "***")
    detail = redact(detail)
    import sqlalchemy as sa

    if isinstance(exc, sa.exc.OperationalError) and "connect" in str(exc).lower():
        return DataError(f"cannot connect to {shown_url(source)!r}: {detail}")
    return DataError(f"the query on {shown_url(source)!r} failed: {detail}")


def _batch(
    names: list[str], rows: list, types: dict[str, pa.DataType], converted: dict[str, str]
) -> pa.RecordBatch:
    arrays = []
    wider: dict[str, pa.DataType] = {}
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]  # transposed in C
    for name, values in zip(names, columns, strict=True):
        known = types.get(name)
        try:
            array = pa.array(values, type=known) if known is not None else pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            wider[name] = join_types(known, pa.array(values).type)
            continue
        if known is None:
            types[name] = array.type  # later batches are read as the first one's types
        array, what = parquet_types.usable(array)
        if what is not None:
            converted.setdefault(name, what)
        arrays.append(array)
    if wider:
        raise Widen(wider)
    return pa.RecordBatch.from_arrays(arrays, names=names)
