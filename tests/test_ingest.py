"""The streamed data-run pass: the canonical form does not depend on batch sizes; bounded profile."""

import numpy as np
import pandas as pd
import pytest

from provenflow.data import datasets, ingest
from provenflow.data.ingest import canonical
from provenflow.errors import DataError
from tests.conftest import PENGUINS


def _table_csv(path, rows: int) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": rng.normal(size=rows).round(4),
            "k": rng.integers(0, 5, rows).astype(object),
            "city": rng.choice(["Oslo", "Lima", "Pune", ""], rows),
            "day": pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), "D"),
            "flag": rng.choice(["True", "False"], rows),
            "late": [""] * rows,  # empty in the first block: null type, then a value at the end
        }
    )
    frame["day"] = frame["day"].dt.strftime("%Y-%m-%d")
    frame.loc[rows - 2, "k"] = 7.5  # an int column that turns float in the last block
    frame.loc[rows - 1, "late"] = "text"
    frame.to_csv(path, index=False)


def test_same_table_same_hash_whatever_the_batch_size(tmp_path, monkeypatch):
    # Smaller row groups than the real ones, so regrouping across batches is exercised in a small file.
    monkeypatch.setattr(canonical, "ROW_GROUP_ROWS", 1000)
    source = tmp_path / "t.csv"
    _table_csv(source, 5000)
    runs = [ingest.ingest(str(source), str(tmp_path), block_bytes=size) for size in (4096, 20_000, 1 << 24)]
    assert len({r.digest for r in runs}) == 1
    assert {r.size for r in runs} == {runs[0].size}
    back = pd.read_parquet(runs[0].path)
    assert len(back) == 5000 and str(back["k"].dtype) == "float64" and back["late"].iloc[-1] == "text"
    assert str(back["day"].dtype) == "str"  # dates stay text, as pandas' read_csv leaves them
    assert back["city"].isna().sum() == (pd.read_csv(source)["city"].isna()).sum()


def test_small_tables_are_profiled_exactly_as_before(tmp_path):
    table = ingest.ingest(str(PENGUINS), str(tmp_path))
    frame = datasets.read_table(str(PENGUINS))
    assert table.profile == datasets.profile_of(frame)
    assert table.schema == datasets.schema_of(frame)
    assert table.validated_on == "all rows"
    pd.testing.assert_frame_equal(pd.read_parquet(table.path), frame)


def test_a_table_larger_than_the_sample_gets_exact_counts_and_a_recorded_sample(tmp_path, monkeypatch):
    source = tmp_path / "t.csv"
    _table_csv(source, 20_000)
    table = ingest.ingest(str(source), str(tmp_path), block_bytes=8192, sample_rows=1000)
    full = pd.read_csv(source)
    exact = datasets.profile_of(full)
    profile = table.profile
    assert table.rows == 20_000 and len(table.sample) == 1000
    assert table.validated_on == "a seeded sample of 1,000 of 20,000 rows"
    assert profile["sample"] == {"rows": 1000, "seed": ingest.SAMPLE_SEED}
    x, exact_x = profile["columns"]["x"], exact["columns"]["x"]
    assert x["count"] == 20_000 and sum(x["histogram"]["counts"]) == 20_000
    assert x["mean"] == pytest.approx(exact_x["mean"]) and x["std"] == pytest.approx(exact_x["std"])
    assert (x["min"], x["max"]) == (exact_x["min"], exact_x["max"])
    assert x["quantiles"]["0.5"] == pytest.approx(exact_x["quantiles"]["0.5"], abs=0.1)
    assert profile["columns"]["k"]["values"] == exact["columns"]["k"]["values"]
    city = profile["columns"]["city"]
    assert (city["frequencies"], city["missing"]) == (
        exact["columns"]["city"]["frequencies"],
        exact["columns"]["city"]["missing"],
    )
    ids = profile["columns"]["id"]
    assert "values" not in ids and ids["count"] == 20_000
    # The same rows are sampled whatever the batch size.
    again = ingest.ingest(str(source), str(tmp_path), block_bytes=1 << 20, sample_rows=1000)
    pd.testing.assert_frame_equal(again.sample, table.sample)


def test_parquet_source_index_is_kept_and_batches_do_not_matter(tmp_path, monkeypatch):
    monkeypatch.setattr(canonical, "ROW_GROUP_ROWS", 700)
    frame = pd.DataFrame({"id": np.arange(3000) + 10, "v": np.linspace(0, 1, 3000)}).set_index("id")
    frame.to_parquet(tmp_path / "f.parquet")
    runs = [
        ingest.ingest(str(tmp_path / "f.parquet"), str(tmp_path), block_bytes=b) for b in (64 * 300, 1 << 24)
    ]
    assert runs[0].digest == runs[1].digest
    assert list(pd.read_parquet(runs[0].path).columns) == ["id", "v"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"a,b\n", "has a header but no rows"),
        (b"a,b\n1,2\n3,4,5,6\n", "could not be parsed as CSV"),
        (b"\xff\xfe\x00garbage\x00\xff\n\x01", "not text in UTF-8|could not be parsed"),
        (b",,\n1,2,3\n4,5,6\n", "column without a header name"),  # a header of no names at all
        (b"a,a,b\n1,2,3\n", "duplicate column names: 'a'"),
    ],
)
def test_bad_csv_gets_a_clear_error_and_leaves_no_file(tmp_path, content, message):
    path = tmp_path / "in" / "bad.csv"
    path.parent.mkdir()
    path.write_bytes(content)
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(DataError, match=message):
        ingest.ingest(str(path), str(work))
    assert list(work.iterdir()) == []


def test_compressed_and_tab_separated_sources_give_the_same_table(tmp_path):
    import gzip

    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"], "c": [0.5, 1.5, None]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress((tmp_path / "t.csv").read_bytes()))
    digests = {ingest.ingest(str(tmp_path / n), str(tmp_path)).digest for n in ("t.csv", "t.tsv", "t.csv.gz")}
    assert len(digests) == 1


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_a_csv_file_with_another_separator_is_read_as_its_columns(tmp_path, sep):
    """Spreadsheet exports in many locales write ';' under a .csv name; statistics packages write tabs."""
    frame = pd.DataFrame(
        {"a": [1, 2, 3], "b": ["x, y", None, "z"], "c": [0.5, 1.5, None], "d": ["2020-01-01"] * 3}
    )
    frame.to_csv(tmp_path / "comma.csv", index=False)
    frame.to_csv(tmp_path / "other.csv", index=False, sep=sep)
    work = str(tmp_path)
    assert (
        ingest.ingest(str(tmp_path / "other.csv"), work).digest
        == ingest.ingest(str(tmp_path / "comma.csv"), work).digest
    )
    pd.testing.assert_frame_equal(
        datasets.read_table(str(tmp_path / "other.csv")), datasets.read_table(str(tmp_path / "comma.csv"))
    )


def test_a_one_column_csv_stays_one_column(tmp_path):
    (tmp_path / "one.csv").write_text("name\nOslo; the capital\nLima\n")
    assert datasets.read_table(str(tmp_path / "one.csv")).columns.tolist() == ["name"]


def _typed_parquet(path, n: int = 300) -> None:
    import datetime as dt
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    label = rng.choice(["good", "bad"], n)
    price = rng.uniform(1, 100, n).round(2)
    label[price > 60] = "good"
    table = pa.table(
        {
            "price": pa.array([decimal.Decimal(f"{p:.2f}") for p in price], pa.decimal128(10, 2)),
            "day": pa.array(
                [dt.date(2020, 1, 1) + dt.timedelta(days=int(d)) for d in rng.integers(0, 700, n)]
            ),
            "wait": pa.array(rng.integers(0, 10**6, n), pa.duration("ms")),
            "opens": pa.array([dt.time(int(h), 30) for h in rng.integers(0, 24, n)], pa.time64("us")),
            "tags": pa.array([["a", "b"][: int(k)] for k in rng.integers(0, 3, n)], pa.list_(pa.string())),
            "where": pa.array([{"x": int(k), "y": "k"} if k else None for k in rng.integers(0, 3, n)]),
            "label": pa.array(label),
        }
    )
    pq.write_table(table, path)


def test_parquet_types_a_model_cannot_use_are_read_as_ones_it_can(tmp_path):
    """Spark and SQL exports write decimals, dates, durations, times and nested columns: a list or
    struct crashed the profile (ArrowNotImplementedError), a decimal price and a date were left out
    as identifiers. Each is now the nearest usable type, with a notice, and trains."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from provenflow.modeling import training

    _typed_parquet(tmp_path / "typed.parquet")
    work = tmp_path / "work"
    work.mkdir()
    table = ingest.ingest(str(tmp_path / "typed.parquet"), str(work))
    frame = pd.read_parquet(table.path)
    assert frame["price"].dtype == "float64" and frame["price"].iloc[0] == pytest.approx(
        float(pd.read_parquet(tmp_path / "typed.parquet")["price"].iloc[0])
    )
    assert str(frame["day"].dtype).startswith("datetime64")
    assert frame["wait"].dtype == "float64" and frame["wait"].max() <= 1000
    assert frame["opens"].dtype == "float64" and set(frame["opens"] % 3600) == {1800.0}
    assert set(frame["tags"]) == {"[]", '["a"]', '["a","b"]'}
    assert frame["where"].isna().any() and '{"x":1,"y":"k"}' in set(frame["where"])
    notes = [n["message"] for n in table.notes]
    assert "column 'price': decimal128(10, 2) read as float64" in notes and len(notes) == 6
    model = training.train_and_evaluate(
        frame, "label", HistGradientBoostingClassifier(max_iter=20), 0, 0.25, profile=table.profile
    )
    kinds = {entry["name"]: entry["kind"] for entry in model.signature["inputs"]}
    assert kinds["price"] == "numeric" and kinds["day"] == "datetime" and kinds["wait"] == "numeric"
    again = ingest.ingest(str(tmp_path / "typed.parquet"), str(work))
    assert again.digest == table.digest  # the conversion is deterministic


def test_a_date_column_is_read_as_text_without_starting_the_pass_again(tmp_path, monkeypatch):
    """A date column made the first block's types wrong (pyarrow reads dates as dates; they stay
    text), so every CSV with one was parsed twice from its start. The head now tells the date
    columns before the first block is parsed; the table is the one the restart gave, to the byte."""
    from provenflow.data.ingest import csv_source, one_pass

    rows = 20_000
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(
        {
            "day": (pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 900, rows), "D")).strftime(
                "%Y-%m-%d"
            ),
            "at": (pd.Timestamp("2021-03-01") + pd.to_timedelta(rng.integers(0, 10**6, rows), "s")).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "x": rng.normal(size=rows).round(3),
        }
    )
    frame.loc[15_000, "at"] = "not yet"  # past the head, in the first block: text in both ways of reading
    frame.to_csv(tmp_path / "t.csv", index=False)
    assert (tmp_path / "t.csv").stat().st_size > 512 * 1024  # far more than the head
    passes = []
    counted = one_pass._one_pass
    monkeypatch.setattr(one_pass, "_one_pass", lambda *a, **k: passes.append(1) or counted(*a, **k))
    work = tmp_path / "work"
    work.mkdir()
    table = ingest.ingest(str(tmp_path / "t.csv"), str(work), block_bytes=1 << 20)
    assert len(passes) == 1  # was 2: the first pass stopped at the date columns
    monkeypatch.setattr(csv_source, "_dates_in_head", lambda *a: {})  # the way it was read before
    before = ingest.ingest(str(tmp_path / "t.csv"), str(work), block_bytes=1 << 20)
    assert len(passes) == 3
    assert (table.digest, table.schema, table.profile) == (before.digest, before.schema, before.profile)
    assert [t["dtype"] for t in table.schema] == ["str", "str", "float64"]


def test_batches_read_ahead_in_a_thread_end_as_they_would_have():
    """The source is read in a thread beside the pass: its error reaches the pass at the batch it
    happened, and a pass that stops early stops the thread and closes the source (its open file)."""
    import threading

    from provenflow.read_ahead import ReadAhead

    closed = []

    def source(fail_at=None):
        try:
            for i in range(10):
                if i == fail_at:
                    raise ValueError(f"bad row {i}")
                yield i
        finally:
            closed.append(threading.current_thread().name)

    ahead = ReadAhead(source(fail_at=3), depth=1)
    got = []
    with pytest.raises(ValueError, match="bad row 3"):
        for item in ahead:
            got.append(item)
    assert got == [0, 1, 2] and not ahead.thread.is_alive()
    ahead = ReadAhead(source(), depth=1)
    assert next(iter(ahead)) == 0
    ahead.close()
    assert not ahead.thread.is_alive() and closed == ["provenflow-read", "provenflow-read"]
