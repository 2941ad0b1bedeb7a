"""SQL sources against the real PostgreSQL of the test session: batches, a stable version, masked errors."""

import pandas as pd
import pytest

from provenflow.data import ingest
from provenflow.data.credentials import Credentials
from provenflow.data.ingest import one_pass
from provenflow.errors import DataError

ROWS = 3000


@pytest.fixture(scope="module")
def sales_db(postgres):
    import psycopg

    url = postgres.create_database("provenflow_sql_source")
    plain = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        for name, order in (("sales", "ASC"), ("sales_reversed", "DESC")):
            conn.execute(
                f"CREATE TABLE {name} (id int, price numeric(8,2), qty int, city text, at timestamp)"
            )
            conn.execute(
                f"INSERT INTO {name} SELECT i, (i % 97) * 1.25, CASE WHEN i < 1500 THEN NULL ELSE i % 7 END, "
                "CASE WHEN i % 3 = 0 THEN 'Oslo' ELSE 'Lima' END, timestamp '2026-01-01' + i * interval '17 minutes' "
                f"FROM generate_series(1, {ROWS}) AS i ORDER BY i {order}"
            )
    return url


def test_a_query_is_read_in_batches_and_gives_the_same_version_again(sales_db, tmp_path, monkeypatch):
    monkeypatch.setattr(one_pass, "SQL_BATCH_ROWS", 256)  # qty is NULL in the first batches, then integers
    small = ingest.ingest(sales_db, str(tmp_path), query="SELECT * FROM sales WHERE id > 10")
    monkeypatch.setattr(one_pass, "SQL_BATCH_ROWS", 100_000)
    whole = ingest.ingest(sales_db, str(tmp_path), query="SELECT * FROM sales WHERE id > 10")
    assert small.digest == whole.digest and small.rows == ROWS - 10
    # The same rows stored in the other physical order: the same version (ordered by every column).
    reversed_ = ingest.ingest(sales_db, str(tmp_path), query="SELECT * FROM sales_reversed WHERE id > 10")
    assert reversed_.digest == whole.digest
    frame = pd.read_parquet(whole.path)
    assert str(frame["price"].dtype) == "float64" and frame["qty"].notna().sum() == ROWS - 1499
    assert str(frame["at"].dtype).startswith("datetime64")
    assert any("price" in n["message"] for n in whole.notes)  # numeric read as float64, said so
    table = ingest.ingest(sales_db, str(tmp_path), table="sales")
    assert table.rows == ROWS


def test_a_refused_connection_is_one_line_with_the_password_masked(tmp_path):
    url = "postgresql+psycopg://reader@127.0.0.1:1/nowhere"
    with pytest.raises(DataError) as caught:
        ingest.ingest(url, str(tmp_path), credentials=Credentials("reader", "s3cret-pw"), query="SELECT 1")
    text = str(caught.value)
    assert text.startswith("cannot connect to 'postgresql+psycopg://127.0.0.1:1/nowhere': ")
    assert "s3cret" not in text and "\n" not in text
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_failing_query_and_a_missing_choice(sales_db, tmp_path):
    with pytest.raises(DataError, match=r"the query on .* failed: .*no_such_table"):
        ingest.ingest(sales_db, str(tmp_path), query="SELECT * FROM no_such_table")
    with pytest.raises(DataError, match="exactly one of --query"):
        ingest.ingest(sales_db, str(tmp_path), query="SELECT 1", table="sales")


def test_a_table_with_a_primary_key_is_ordered_by_it_alone(postgres, tmp_path):
    """ORDER BY the key (the database walks its index) instead of every column; the order still fixed."""
    import psycopg

    url = postgres.create_database("provenflow_sql_keyed")
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute("CREATE TABLE keyed (city text, n int, id int PRIMARY KEY)")
        conn.execute("CREATE TABLE unkeyed (city text, n int, id int)")
        for name in ("keyed", "unkeyed"):
            conn.execute(f"INSERT INTO {name} VALUES ('Oslo', 1, 1), ('Lima', 2, 2), ('Oslo', 0, 3)")
    keyed = ingest.ingest(url, str(tmp_path), table="public.keyed")
    assert pd.read_parquet(keyed.path)["id"].tolist() == [1, 2, 3]  # by the key, not by city first
    unkeyed = ingest.ingest(url, str(tmp_path), table="unkeyed")
    assert pd.read_parquet(unkeyed.path)["id"].tolist() == [2, 3, 1]  # every column: Lima, Oslo 0, Oslo 1
    assert ingest.ingest(url, str(tmp_path), table="keyed").digest == keyed.digest


def test_a_query_that_would_write_is_refused_by_the_database(sales_db, tmp_path):
    """The source is read in a read-only transaction: a query is typed on the CLI, in a deployment's
    form, or taken from a retrain's record, and reading must never change the team's database."""
    import psycopg

    plain = sales_db.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute("CREATE SEQUENCE IF NOT EXISTS order_numbers")
        before = conn.execute("SELECT last_value FROM order_numbers").fetchone()[0]
    with pytest.raises(DataError, match="read-only transaction"):
        ingest.ingest(sales_db, str(tmp_path), query="SELECT setval('order_numbers', 4242) AS v")
    with psycopg.connect(plain, autocommit=True) as conn:
        assert conn.execute("SELECT last_value FROM order_numbers").fetchone()[0] == before
