import pandas as pd
import pytest

from provenflow.data import datasets
from provenflow.errors import DataError
from provenflow.storage.store import ContentStore
from tests.conftest import PENGUINS


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"a,b\n", "has a header but no rows"),
        (b"a,b\n1,2\n3,4,5,6\n", "could not be parsed as CSV"),
        (b"\xff\xfe\x00garbage\x00\xff\n\x01", "not text in UTF-8|could not be parsed"),
        (b",,\n1,2,3\n4,5,6\n", "column without a header name"),  # a header of no names at all
    ],
)
def test_bad_csv_gets_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        datasets.read_table(str(path))


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="no file at"):
        datasets.read_table(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="cannot tell the format"):
        datasets.read_table(str(tmp_path / "data.xlsx"))


def test_corrupt_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DataError, match="could not be read as parquet"):
        datasets.read_table(str(path))


def test_parquet_form_is_deterministic_and_round_trips(tmp_path):
    frame = datasets.read_table(str(PENGUINS))
    assert datasets.to_parquet_bytes(frame) == datasets.to_parquet_bytes(datasets.read_table(str(PENGUINS)))
    store = ContentStore(str(tmp_path / "store"))
    stored = datasets.store_table(store, frame)
    back = datasets.load_table(store, stored.digest)
    pd.testing.assert_frame_equal(back, frame)


def test_profile_describes_numeric_and_categorical_columns():
    frame = datasets.read_table(str(PENGUINS))
    profile = datasets.profile_of(frame)
    assert profile["rows"] == 344
    mass = profile["columns"]["body_mass_g"]
    assert mass["kind"] == "numeric" and mass["missing"] == 2 and mass["count"] == 342
    assert mass["min"] == 2700.0 and mass["max"] == 6300.0
    assert sum(mass["histogram"]["counts"]) == 342
    assert mass["histogram"]["edges"] == sorted(mass["histogram"]["edges"])
    species = profile["columns"]["species"]
    assert species["kind"] == "categorical"
    assert species["frequencies"] == {"Adelie": 152, "Gentoo": 124, "Chinstrap": 68}
    assert profile["columns"]["sex"]["missing"] == 11


@pytest.mark.parametrize(
    ("name", "content"),
    [("dupes.csv", b"a,a,b,b,c\n1,2,3,4,5\n"), ("dupes.tsv", b"a\ta\tb\tb\tc\n1\t2\t3\t4\t5\n")],
)
def test_duplicate_csv_column_names_are_refused_not_renamed(tmp_path, name, content):
    # pandas would silently rename the second 'a' to 'a.1'.
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"duplicate column names: 'a', 'b'; .*rename") as caught:
        datasets.read_table(str(path))
    assert "\n" not in str(caught.value)


def test_duplicate_parquet_column_names_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "dupes.parquet"
    pq.write_table(pa.table([[1, 2], [3, 4], [5, 6]], names=["a", "a", "b"]), path)
    with pytest.raises(DataError, match=r"duplicate column names: 'a'; .*rename"):
        datasets.read_table(str(path))


def test_a_column_named_like_a_renamed_duplicate_is_fine(tmp_path):
    path = tmp_path / "ok.csv"
    path.write_bytes(b'\xef\xbb\xbfa,a.1,"b,c"\n1,2,3\n')
    assert list(datasets.read_table(str(path)).columns) == ["a", "a.1", "b,c"]


def test_a_seeded_sample_reads_the_same_rows_a_row_group_at_a_time(tmp_path, monkeypatch):
    import numpy as np

    from provenflow.data import ingest
    from provenflow.data.ingest import canonical

    monkeypatch.setattr(canonical, "ROW_GROUP_ROWS", 50)
    source = tmp_path / "t.csv"
    pd.DataFrame({"i": np.arange(1000), "s": [f"r{i}" for i in range(1000)]}).to_csv(source, index=False)
    store = ContentStore(str(tmp_path / "store"))
    digest = ingest.store_ingested(store, ingest.ingest(str(source), ingest.workdir_for(store))).digest
    sample = datasets.load_sample(store, digest, 100, seed=7)
    rows = datasets.sampled_rows(1000, 100, 7)
    assert sample["i"].tolist() == rows.tolist() and len(set(rows)) == 100
    assert datasets.load_sample(store, digest, 100, seed=7).equals(sample)
    assert not datasets.load_sample(store, digest, 100, seed=8).equals(sample)
    assert datasets.sample_size(1000, None) == 1000 and datasets.sample_size(1000, 0) == 1000
    with pytest.raises(DataError, match="sample must be 0"):
        datasets.sample_size(1000, -1)
