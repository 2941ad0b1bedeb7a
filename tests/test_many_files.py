"""Sources of many files: folders, globs and prefixes read as one table, a version a manifest of parts."""

import itertools
import os
import shutil

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from provenflow.data import datasets
from provenflow.data.ingest import listing
from provenflow.data.ingest.many import ingest_many
from provenflow.data.ingest.stat_cache import StatCache
from provenflow.errors import DataError
from provenflow.storage.store import ContentStore


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows).round(3),
            "n": rng.integers(0, 9, rows),
            "c": rng.choice(["a", "b"], rows),
        }
    )


def _run(source: str, tmp_path, store=None, cache=None):
    store = store or ContentStore(str(tmp_path / "store"))
    cache = cache or StatCache(tmp_path / "cache.json")
    return ingest_many(listing.list_source(source), store, cache), store


def _objects(store: ContentStore) -> dict[str, int]:
    found = {}
    for folder, _, names in os.walk(os.path.join(store.root, "objects")):
        for name in names:
            found[os.path.join(folder, name)] = os.path.getsize(os.path.join(folder, name))
    return found


def test_a_hive_folder_is_one_table_with_typed_partition_columns(tmp_path):
    root = tmp_path / "events"
    for region, year in (("north", 2025), ("south", 2025), ("north", 2026)):
        folder = root / f"region={region}" / f"year={year}"
        folder.mkdir(parents=True)
        _frame(50, year + len(region)).to_parquet(folder / "part-0.parquet", index=False)
    (root / "_SUCCESS").write_text("")
    table, store = _run(str(root), tmp_path)
    frame = datasets.load_table(store, table.digest)
    assert len(frame) == table.rows == 150
    assert list(frame.columns) == ["x", "n", "c", "region", "year"]
    assert str(frame["year"].dtype) == "int64" and set(frame["region"]) == {"north", "south"}
    # Rows in the order of the files' relative paths: north/2025, north/2026, south/2025.
    assert frame["year"].tolist() == [2025] * 50 + [2026] * 50 + [2025] * 50
    assert [rel for rel, _ in table.files] == [
        "region=north/year=2025/part-0.parquet", "region=north/year=2026/part-0.parquet",
        "region=south/year=2025/part-0.parquet",
    ]  # fmt: skip
    assert table.profile["rows"] == 150 and table.profile["columns"]["year"]["kind"] == "numeric"
    sample = datasets.load_sample(store, table.digest, 20, seed=1)
    assert len(sample) == 20 and list(sample.columns) == list(frame.columns)


def test_a_glob_of_csv_exports_gives_the_same_version_whatever_the_listing_order(tmp_path):
    exports = tmp_path / "exports"
    exports.mkdir()
    days = {f"2026-01-0{d}.csv": _frame(30, d) for d in (1, 2, 3)}
    for name, frame in days.items():
        frame.to_csv(exports / name, index=False)
    (exports / "notes.txt").write_text("not data")
    table, store = _run(str(exports / "2026-*.csv"), tmp_path)
    assert table.rows == 90
    expected = pd.concat(days.values(), ignore_index=True)
    pd.testing.assert_frame_equal(datasets.load_table(store, table.digest), expected, check_dtype=False)
    # Another copy, the files written in the opposite order: the same version.
    other = tmp_path / "other"
    other.mkdir()
    for name in sorted(days, reverse=True):
        days[name].to_csv(other / name, index=False)
    again, _ = _run(str(other / "*.csv"), tmp_path / "second")
    assert again.digest == table.digest


def test_an_fsspec_prefix_is_read_like_a_folder(tmp_path):
    fs = fsspec.filesystem("memory")
    for d in (1, 2):
        with fs.open(f"/bucket/sales/day={d}/part.csv", "w") as fh:
            _frame(10, d).to_csv(fh, index=False)
    table, store = _run("memory://bucket/sales/", tmp_path)
    frame = datasets.load_table(store, table.digest)
    assert len(frame) == 20 and frame["day"].tolist() == [1] * 10 + [2] * 10


def test_a_new_partition_stores_only_that_partition_and_unchanged_files_are_not_read(tmp_path, monkeypatch):
    root = tmp_path / "big"
    for day in range(1, 6):
        (root / f"day={day}").mkdir(parents=True)
        _frame(2000, day).to_csv(root / f"day={day}" / "data.csv", index=False)
    store = ContentStore(str(tmp_path / "store"))
    first, _ = _run(str(root), tmp_path, store)
    before = _objects(store)
    (root / "day=6").mkdir()
    _frame(2000, 6).to_csv(root / "day=6" / "data.csv", index=False)
    new_file = os.path.getsize(root / "day=6" / "data.csv")
    read = []
    from provenflow.data.ingest import many

    real = many.ingest
    monkeypatch.setattr(many, "ingest", lambda source, *a, **k: read.append(source) or real(source, *a, **k))
    second, _ = _run(str(root), tmp_path, store, StatCache(tmp_path / "cache.json"))
    assert read == [str(root / "day=6" / "data.csv")]  # the five unchanged files were not read
    added = {p: s for p, s in _objects(store).items() if p not in before}
    assert second.digest != first.digest and second.rows == 12_000
    # The new raw file, its part and the manifest: about the new partition's size, not the folder's.
    assert sum(added.values()) < 2.5 * new_file and len(added) == 3
    assert datasets.load_table(store, second.digest)["day"].tolist()[-1] == 6


def test_files_must_share_a_schema_and_csv_types_are_joined(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_csv(folder / "1.csv", index=False)
    pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"]}).to_csv(folder / "2.csv", index=False)
    table, store = _run(str(folder), tmp_path)
    assert datasets.load_table(store, table.digest)["a"].tolist() == [1.0, 2.0, 1.5, 2.5]
    pd.DataFrame({"a": [1], "c": ["z"]}).to_csv(folder / "3.csv", index=False)
    fresh = ContentStore(str(tmp_path / "fresh"))
    with pytest.raises(DataError, match=r"'3.csv' does not have the schema of '1.csv': it has no column 'b'"):
        _run(str(folder), tmp_path, fresh, StatCache(tmp_path / "other.json"))
    assert not _objects(fresh) and not os.listdir(fresh.tmp_dir)  # nothing stored, no part left behind


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "the folder holds no data file"),
        ({"region=a/x.csv": "a\n1\n", "north/x.csv": "a\n1\n"}, "partition folder 'north'"),
        ({"x.csv": "a\n1\n", "y.parquet": None}, "mixes formats"),
    ],
)
def test_bad_folders_get_one_clear_line(tmp_path, layout, message):
    root = tmp_path / "src"
    root.mkdir()
    for name, text in layout.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            pa.table({"a": [1]}).to_pandas().to_parquet(root / name)
        else:
            (root / name).write_text(text)
    store = ContentStore(str(tmp_path / "store"))
    with pytest.raises(DataError, match=message):
        _run(str(root), tmp_path, store)
    assert not _objects(store)  # nothing written


def test_a_glob_matching_nothing(tmp_path):
    with pytest.raises(DataError, match="no file matches the pattern"):
        listing.list_source(str(tmp_path / "exports-*.csv"))


def test_the_profile_is_the_whole_tables_and_unchanged_parts_are_not_read_again(tmp_path, monkeypatch):
    from provenflow.data.ingest import part_summaries

    root = tmp_path / "t"
    root.mkdir()
    for day in range(1, 5):
        _frame(1500, day).to_csv(root / f"{day}.csv", index=False)
    store = ContentStore(str(tmp_path / "store"))
    listed = listing.list_source(str(root))
    small = ingest_many(listed, store, StatCache(tmp_path / "cache.json"))
    whole = datasets.load_table(store, small.digest)
    assert {**small.profile, "fingerprint": None} == {**datasets.profile_of(whole), "fingerprint": None}
    assert small.validated_on == "all rows"
    # Above the sample size: exact counts and moments, quantiles from a sample of about 2,000 rows.
    cache = StatCache(tmp_path / "cache2.json")
    large = ingest_many(listed, store, cache, sample_rows=2000)
    x = large.profile["columns"]["x"]
    assert x["count"] == 6000 and x["mean"] == pytest.approx(whole["x"].mean())
    assert x["std"] == pytest.approx(whole["x"].std()) and x["min"] == whole["x"].min()
    assert large.profile["columns"]["c"]["frequencies"] == whole["c"].value_counts().to_dict()
    assert 1700 < len(large.sample) < 2300 and "sample" in large.validated_on
    read = []
    real = part_summaries.Summaries._read
    monkeypatch.setattr(
        part_summaries.Summaries, "_read", lambda self, s, d, b: read.append(d) or real(self, s, d, b)
    )
    _frame(1500, 9).to_csv(root / "5.csv", index=False)
    again = ingest_many(
        listing.list_source(str(root)), store, StatCache(tmp_path / "cache2.json"), sample_rows=2000
    )
    # No part was read back for the profile: the new one was summarised by the pass that wrote it.
    assert read == []
    assert again.profile["columns"]["x"]["count"] == 7500
    # A part keeps its sample rows when a partition is added: the rows sampled before are sampled again.
    assert 1700 < len(again.sample) < 2300
    # Summaries are a cache: lost, they are rebuilt from the parts, and describe the table the same.
    shutil.rmtree(tmp_path / "part-summaries")
    rebuilt = ingest_many(
        listing.list_source(str(root)), store, StatCache(tmp_path / "cache2.json"), sample_rows=2000
    )
    assert len(read) == 5 and rebuilt.digest == again.digest
    assert rebuilt.profile == again.profile
    pd.testing.assert_frame_equal(rebuilt.sample, again.sample)


def test_a_folders_first_run_keeps_each_new_parts_summary_once(tmp_path, monkeypatch):
    """A part's summary was kept (pickled) by the pass's commit, then again by the profile, cut to
    the whole table's sample threshold, for the first files of a folder's first run. Now the commit
    cuts it, and each new part's summary is written once."""
    from provenflow.data.ingest import part_summaries

    root = tmp_path / "t"
    root.mkdir()
    for day in range(1, 5):
        _frame(1500, day).to_csv(root / f"{day}.csv", index=False)
    kept = []
    real = part_summaries.Summaries.put
    monkeypatch.setattr(
        part_summaries.Summaries, "put", lambda self, d, s: kept.append(d) or real(self, d, s)
    )
    store = ContentStore(str(tmp_path / "store"))
    first = ingest_many(
        listing.list_source(str(root)), store, StatCache(tmp_path / "c.json"), sample_rows=2000
    )
    assert sorted(kept) == sorted(first.parts)  # was 6 writes for 4 parts
    _frame(1500, 5).to_csv(root / "5.csv", index=False)
    kept.clear()
    again = ingest_many(
        listing.list_source(str(root)), store, StatCache(tmp_path / "c.json"), sample_rows=2000
    )
    assert kept == [again.parts[-1]]
    fresh = ingest_many(
        listing.list_source(str(root)), store, StatCache(tmp_path / "other.json"), sample_rows=2000
    )
    assert (fresh.digest, fresh.profile) == (again.digest, again.profile)
    pd.testing.assert_frame_equal(fresh.sample, again.sample)


def test_the_same_rows_cut_into_other_files_are_the_same_version(tmp_path):
    rows = _frame(5000, 1)
    cuts = {"two": [0, 2500, 5000], "three": [0, 100, 4000, 5000]}
    results = {}
    store = ContentStore(str(tmp_path / "store"))
    seen: dict[str, object] = {}

    def known(fingerprint):
        return seen.get(fingerprint)

    for name, edges in cuts.items():
        root = tmp_path / name
        root.mkdir()
        for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
            rows.iloc[lo:hi].to_csv(root / f"{i}.csv", index=False)
        table = ingest_many(
            listing.list_source(str(root)), store, StatCache(tmp_path / "c.json"), known=known
        )
        seen[table.profile["fingerprint"]] = table.digest
        results[name] = table
    assert results["two"].digest == results["three"].digest
    assert results["two"].profile["fingerprint"] == results["three"].profile["fingerprint"]
    shuffled = tmp_path / "other-order"
    shuffled.mkdir()
    rows.iloc[::-1].to_csv(shuffled / "0.csv", index=False)
    other = ingest_many(
        listing.list_source(str(shuffled)), store, StatCache(tmp_path / "c.json"), known=known
    )
    assert other.profile["fingerprint"] != results["two"].profile["fingerprint"]  # order is part of a table


def test_the_row_hash_is_pandas_hash_of_the_rows():
    """The fingerprint's row hash, computed from Arrow, must give pandas' numbers: a table's
    fingerprint (and finding its earlier version) must not change with how it is computed."""
    from provenflow.data.ingest.part_summaries import row_hashes

    batch = pa.RecordBatch.from_pydict(
        {
            "s": ["a", None, "b", "a", "", "é"],
            "none": pa.array([None] * 6, pa.string()),
            "big": pa.array(["x", "y", None, "x", "z", "w"], pa.large_string()),
            "i": [1, None, 3, 4, 5, 6],
            "f": [0.5, float("nan"), None, 1e300, -0.0, 2.0],
            "b": [True, None, False, True, True, False],
            "d": pa.array([0, 1, None, 3, 4, 5], pa.date32()),
        }
    )
    expected = pd.util.hash_pandas_object(batch.to_pandas(), index=False).to_numpy()
    assert row_hashes(batch).tolist() == expected.tolist()
    assert row_hashes(batch.slice(0, 0)).tolist() == []
    ids = pa.RecordBatch.from_pydict({"id": [f"row-{i}" for i in range(3000)], "n": list(range(3000))})
    expected = pd.util.hash_pandas_object(ids.to_pandas(), index=False).to_numpy()
    assert (
        row_hashes(ids).tolist() == expected.tolist()
    )  # an identifier column: hashed without its distinct values


def test_a_text_columns_counts_from_its_dictionary_encoding_are_value_counts():
    """The part summary counts a text column from the dictionary encoding its row hashes made:
    the same counts, in the same order, as a second value_counts gave."""
    import pyarrow.compute as pc

    from provenflow.data.ingest.profiling import Column

    array = pa.array(["b", None, "a", "", "b", "é", None, "b"])
    plain, shared = Column(array.type), Column(array.type)
    for _ in range(2):
        plain.add(array)
        shared.add(array, pc.dictionary_encode(array))
    expected = [("b", 6), ("a", 2), ("", 2), ("é", 2)]
    assert list(shared.counts.items()) == list(plain.counts.items()) == expected
    assert (shared.missing, shared.count) == (plain.missing, plain.count) == (4, 12)


def test_a_folder_of_more_files_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    from provenflow.settings import get_settings

    root = tmp_path / "many"
    root.mkdir()
    for i in range(4):
        (root / f"{i}.csv").write_text("a\n1\n")
    monkeypatch.setenv("PROVENFLOW_MAX_FILES", "3")
    get_settings.cache_clear()
    try:
        store = ContentStore(str(tmp_path / "store"))
        with pytest.raises(DataError) as refused:
            _run(str(root), tmp_path, store)
        message = str(refused.value)
        assert "4 files, more than the limit of 3" in message and "PROVENFLOW_MAX_FILES" in message
        assert "\n" not in message and not _objects(store)
        monkeypatch.setenv("PROVENFLOW_MAX_FILES", "4")
        get_settings.cache_clear()
        assert _run(str(root), tmp_path, store)[0].rows == 4
    finally:
        get_settings.cache_clear()


def test_a_folders_column_statistics_merged_at_once_are_those_merged_one_part_at_a_time():
    """The whole table's exact counts are merged from every part's at once (a text column's value
    counts summed in one go): the same statistics, counts in the same order, as one by one."""
    from provenflow.data.ingest.profiling import EXACT_DISTINCT, Column

    rng = np.random.default_rng(4)
    arrays = {
        "text": lambda n: pa.array(rng.choice(["a", "b", "", "é", None], n)),
        "flag": lambda n: pa.array(rng.choice([True, False], n)),
        "number": lambda n: pa.array(rng.integers(0, 7, n)),
        "many": lambda n: pa.array([f"k{v}" for v in rng.integers(0, 10 * EXACT_DISTINCT, n)]),
    }
    for name, make in arrays.items():
        parts = []
        for n in (50, 300, 2000, 9000):
            column = Column(make(1).type)
            column.add(make(n))
            parts.append(column)
        one_by_one = Column(pa.null())
        one_by_one.numeric, one_by_one.integer = parts[0].numeric, parts[0].integer
        for part in parts:
            one_by_one.merge(part)
        at_once = Column.merged(parts)
        assert vars(at_once).keys() == vars(one_by_one).keys()
        for field, value in vars(one_by_one).items():
            other = getattr(at_once, field)
            if isinstance(value, dict):
                assert list(other.items()) == list(value.items()), (name, field)
            else:
                assert other == value or (value != value and other != other), (name, field)
    assert Column.merged(parts).counts is None  # "many": more distinct values than are counted


def test_date_and_timestamp_partition_folders_are_dates_and_a_model_uses_them(tmp_path):
    """date=2026-11-18/ (and hour=2026-11-18 10%3A00%3A00/, as Spark writes a timestamp) were text,
    one value per partition: taken for an identifier and left out of every model."""
    from provenflow.data import features
    from provenflow.modeling.training import FeatureChoice

    root = tmp_path / "sales"
    days = [f"2026-11-{d:02d}" for d in range(1, 29)]
    for day in days:
        stamp = f"{day} 10%3A00%3A00"
        (root / f"date={day}" / f"at={stamp}").mkdir(parents=True)
        frame = _frame(12, int(day[-2:]))
        frame["sold"] = frame["x"] + (pd.Timestamp(day).dayofweek >= 5) * 5.0  # weekends sell more
        frame.to_csv(root / f"date={day}" / f"at={stamp}" / "part.csv", index=False)
    (root / "date=2026-02-30" / "at=x").mkdir(parents=True)  # not a date: the column stays text
    table, store = _run(str(root), tmp_path)
    frame = datasets.load_table(store, table.digest)
    assert {type(v).__name__ for v in frame["date"]} == {"date"}
    assert str(frame["at"].dtype).startswith("datetime64") and frame["at"].iloc[0] == pd.Timestamp("2026-11-01 10:00")
    roles = features.column_roles(table.profile, frame)
    assert roles["date"].role == "datetime" and roles["at"].role == "datetime", roles
    assert features.select(frame, "sold", FeatureChoice(), table.profile).used["date"] == "datetime"

    odd = tmp_path / "odd"
    for value in ("2026-02-28", "2026-02-30"):
        (odd / f"date={value}").mkdir(parents=True)
        _frame(5, 1).to_csv(odd / f"date={value}" / "part.csv", index=False)
    assert listing.list_source(str(odd)).partitions == {"date": pa.string()}


def test_a_date_column_of_a_parquet_file_is_a_date_to_the_model(tmp_path):
    """A Parquet (or SQL) DATE column reads as Python date objects: the date format guess reads text
    only, so the column was taken for an identifier and left out of the model."""
    import datetime

    from provenflow.modeling import training

    rng = np.random.default_rng(5)
    day = [datetime.date(2026, 1, 1) + datetime.timedelta(days=int(d)) for d in rng.integers(0, 365, 1500)]
    weekend = np.array([d.weekday() >= 5 for d in day])
    table = pa.table({"day": pa.array(day, pa.date32()), "noise": rng.normal(size=1500),
                      "sold": np.where(weekend, 10.0, 1.0) + rng.normal(scale=0.1, size=1500)})  # fmt: skip
    frame = table.to_pandas()
    tree = training.import_estimator("sklearn.tree.DecisionTreeRegressor", {"max_depth": 4}, seed=0)
    trained = training.train_and_evaluate(frame, "sold", tree, seed=0, test_size=0.25)
    assert any(n.startswith("datetime__day") for n in trained.pipeline.named_steps["prepare"].get_feature_names_out())
    assert trained.metrics["r2"] > 0.95
    # A team's own model logged on these rows (pf.log_model): the column is a date input too, so the
    # server checks it as a date and the drift check leaves it out (new dates are not drift); as a
    # category, every day after training was an unseen value and every check said drift.
    from provenflow.modeling.flavors import signature_of

    inputs = signature_of(frame.drop(columns="sold"), "sold", "float64", "regression", None)["inputs"]
    assert {i["name"]: i["kind"] for i in inputs} == {"day": "datetime", "noise": "numeric"}


def test_a_file_rewritten_in_place_with_its_time_kept_is_seen_only_when_reread(tmp_path):
    """`rsync --inplace -t` (or `cp -p` over a file) keeps size, mtime and inode: the stat cache takes
    the file as unchanged without reading it. Before, the data run then said 'unchanged content'; now
    it says how many files it did not read, and a reread reads them."""
    folder = tmp_path / "lake"
    folder.mkdir()
    for day in (1, 2):
        _frame(50, day).to_csv(folder / f"day-{day}.csv", index=False)
    first, store = _run(str(folder), tmp_path)
    assert first.unread == 0
    path = folder / "day-2.csv"
    stat = path.stat()
    text = path.read_text()
    corrected = text.replace(",a\n", ",b\n", 1)
    assert corrected != text and len(corrected) == len(text)
    with open(path, "r+") as f:  # in place: the same inode
        f.write(corrected)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    trusted, _ = _run(str(folder), tmp_path, store)
    assert (trusted.digest, trusted.unread) == (first.digest, 2)
    reread, _ = _run(str(folder), tmp_path, store, StatCache(tmp_path / "cache.json", trusted=False))
    assert reread.digest != first.digest and reread.unread == 0
    again, _ = _run(str(folder), tmp_path, store)  # what the reread read is what the cache knows now
    assert (again.digest, again.unread) == (reread.digest, 2)


def test_parquet_files_with_a_whole_number_column_as_int64_and_as_double_are_one_table(tmp_path):
    """pandas writes a column of whole numbers as int64, and as double once a day's file holds a NaN.
    Before: 'column promo is double there but int64', the folder refused (CSV folders were joined)."""
    folder = tmp_path / "lake"
    for day, promo in (("2026-02-19", [0, 1, 0]), ("2026-02-20", [1.0, np.nan, 0.0])):
        (folder / f"date={day}").mkdir(parents=True)
        pd.DataFrame({"sold": [3, 4, 5], "promo": promo}).to_parquet(folder / f"date={day}" / "part-0.parquet")
    read, store = _run(str(folder), tmp_path)
    table = datasets.load_table(store, read.digest)
    assert str(table["promo"].dtype) == "float64" and table["sold"].dtype == "int64"
    assert table["promo"].tolist()[:3] == [0.0, 1.0, 0.0] and table["promo"].isna().sum() == 1
    other = tmp_path / "other"
    for day, city in (("a", ["x", "y"]), ("b", [1, 2])):  # text and numbers: still refused
        (other / f"day={day}").mkdir(parents=True)
        pd.DataFrame({"city": city}).to_parquet(other / f"day={day}" / "part-0.parquet")
    with pytest.raises(DataError, match="column 'city' is"):
        _run(str(other), tmp_path)
