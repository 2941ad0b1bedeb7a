"""CSV files as public data sets write them (issue 10): Windows-1252, '?' for gaps, ', ' separators,
decimal commas, no header row. The data-run's streamed pyarrow reader (ingest) and the pandas reader
(datasets.read_table) must read each the same way, and say what they inferred."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from provenflow.data import datasets, ingest
from provenflow.errors import DataError


def _both(path, tmp_path, **options) -> tuple[pd.DataFrame, ingest.Ingested]:
    """The table a data-run stores, which must be read_table's frame too, and what ingest said."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    table = ingest.ingest(str(path), str(work), **options)
    stored = pd.read_parquet(table.path)
    pd.testing.assert_frame_equal(stored, datasets.read_table(str(path)))
    return stored, table


def _notes(table: ingest.Ingested) -> list[str]:
    return [n["message"] for n in table.notes]


def _adultish(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(17, 90, rows)
    hours = rng.integers(1, 99, rows).astype(object)
    work = rng.choice(["State-gov", "Private", "Self-emp-not-inc"], rows).astype(object)
    label = np.where((age > 40) & (rng.random(rows) < 0.8), ">50K", "<=50K")
    return pd.DataFrame({"age": age, "workclass": work, "hours": hours, "label": label})


# -- 1. encodings --------------------------------------------------------------------------------


def test_a_windows_1252_export_is_read_as_cp1252(tmp_path):
    # Kaggle's "Sample Superstore" and Excel's "CSV" save: Windows-1252, not UTF-8.
    path = tmp_path / "superstore.csv"
    path.write_bytes(
        "Customer,City,Sales\nJosé Núñez,Zürich,12.5\nRenée,Köln,3\nA–Z,Paris,1\n".encode("cp1252")
    )
    frame, table = _both(path, tmp_path)
    assert frame["Customer"].tolist() == ["José Núñez", "Renée", "A–Z"]
    assert frame["City"].tolist() == ["Zürich", "Köln", "Paris"]
    assert "read as cp1252 (not UTF-8)" in _notes(table)


@pytest.mark.parametrize("block_bytes", [16 * 1024, ingest.BLOCK_BYTES])
def test_a_non_utf8_byte_far_past_the_sniffed_head_moves_to_the_next_encoding(tmp_path, block_bytes):
    """The first non-UTF-8 byte 300 KiB in: past the sniffed head, and (small blocks) past the
    first block the reader inferred types from; a byte cp1252 does not define goes on to latin-1."""
    rows = [f"{i},plain text {i}" for i in range(20_000)]
    for name, tail, encoding, text in [
        ("cp.csv", "Café €5".encode("cp1252"), "cp1252", "Café €5"),
        ("latin.csv", b"caf\xe9 \x81", "latin-1", "café \x81"),
    ]:
        path = tmp_path / name
        path.write_bytes(("id,note\n" + "\n".join(rows) + "\n").encode() + b"20000," + tail + b"\n")
        frame, table = _both(path, tmp_path, block_bytes=block_bytes)
        assert (
            len(frame) == 20_001
            and frame["note"].iloc[-1] == text
            and frame["note"].iloc[0] == "plain text 0"
        )
        assert f"read as {encoding} (not UTF-8)" in _notes(table)


@pytest.mark.parametrize(
    "content",
    [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4, b"a,b\n1,\x002\n"],
    ids=["png", "nul"],
)
def test_binary_files_are_still_refused_not_read_as_latin1(tmp_path, content):
    path = tmp_path / "picture.csv"
    path.write_bytes(content)
    for read in (lambda: ingest.ingest(str(path), str(tmp_path)), lambda: datasets.read_table(str(path))):
        with pytest.raises(DataError, match=r"is not text .*binary files.*is it really CSV\?"):
            read()


def test_a_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "unicode.csv"
    path.write_bytes("a\tb\n1\tZürich\n".encode("utf-16"))  # Excel's "Unicode Text": BOM, then UTF-16
    for read in (lambda: ingest.ingest(str(path), str(tmp_path)), lambda: datasets.read_table(str(path))):
        with pytest.raises(DataError, match=r"not text in UTF-8 but UTF-16 .*save it as 'CSV UTF-8'"):
            read()


# -- 2. gap markers ------------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["?", "-", "--", ".", "missing", "None"])
def test_a_gap_marker_in_a_numeric_column_is_read_as_missing(tmp_path, marker):
    frame = _adultish(300)
    frame.loc[[3, 50, 299], "hours"] = marker
    frame.to_csv(tmp_path / "adult.csv", index=False)
    stored, table = _both(tmp_path / "adult.csv", tmp_path)
    assert str(stored["hours"].dtype) == "float64" and stored["hours"].isna().sum() == 3
    assert stored["hours"].dropna().tolist() == frame["hours"].drop([3, 50, 299]).astype(float).tolist()
    assert f"{marker!r} read as missing (column 'hours'), in every column" in _notes(table)


@pytest.mark.parametrize("block_bytes", [16 * 1024, ingest.BLOCK_BYTES])
def test_a_gap_marker_first_seen_far_past_the_head_is_read_as_missing_too(tmp_path, block_bytes):
    """'?' first at row 15,000 (~200 KiB in): past the sniffed head; past the first block (small
    blocks: a conversion error) or inside it (the default: a text column by inference)."""
    frame = _adultish(20_000)
    frame.loc[15_000, "hours"] = "?"
    frame.loc[19_000, "workclass"] = "?"  # a text column: its '?' is missing as well (one marker per file)
    frame.to_csv(tmp_path / "adult.csv", index=False)
    stored, table = _both(tmp_path / "adult.csv", tmp_path, block_bytes=block_bytes)
    assert str(stored["hours"].dtype) == "float64" and stored["hours"].isna().sum() == 1
    assert stored["workclass"].isna().sum() == 1
    assert "'?' read as missing (column 'hours'), in every column" in _notes(table)


def test_a_text_column_with_a_marker_and_words_keeps_them(tmp_path):
    """'?' beside numbers only in a column that later holds words: that column is text, '?' a value."""
    frame = _adultish(20_000)
    frame["code"] = np.arange(20_000).astype(object)
    frame.loc[100, "code"] = "?"
    frame.loc[18_000, "code"] = "A17"
    frame.to_csv(tmp_path / "codes.csv", index=False)
    stored, table = _both(tmp_path / "codes.csv", tmp_path, block_bytes=16 * 1024)
    assert stored["code"].iloc[100] == "?" and stored["code"].iloc[18_000] == "A17"
    assert not any("read as missing" in n for n in _notes(table))


# -- 3. ', ' separators --------------------------------------------------------------------------


def test_comma_space_separated_names_and_values_lose_the_space(tmp_path):
    # UCI adult: '39, State-gov, 77516'. Names came out as ' workclass', values as ' Private'.
    frame = _adultish(200)
    frame["flag"] = np.where(frame["age"] > 50, "True", "False")
    (tmp_path / "adult.csv").write_text(frame.to_csv(index=False).replace(",", ", "))
    stored, table = _both(tmp_path / "adult.csv", tmp_path)
    assert stored.columns.tolist() == ["age", "workclass", "hours", "label", "flag"]
    assert set(stored["workclass"]) == {"State-gov", "Private", "Self-emp-not-inc"}
    assert str(stored["age"].dtype) == "int64" and str(stored["flag"].dtype) == "bool"
    assert any("separated by ',' and a space" in n for n in _notes(table))


@pytest.mark.parametrize("block_bytes", [4096, ingest.BLOCK_BYTES])
def test_comma_space_separated_quoted_fields_are_read_as_pandas_reads_them(tmp_path, block_bytes):
    """Quoted fields holding ', ' and '""', runs of spaces, and (small blocks) a separator and its
    spaces split across two reads of the stream."""
    rng = np.random.default_rng(2)
    lines = ["id, name, city, n"]
    for i in range(5000):
        pad = " " * int(rng.integers(1, 4))
        name = rng.choice(['"Smith, John"', '"say ""hi"", then"', "plain", '"  kept, spaces"'])
        lines.append(f"{i},{pad}{name}, {rng.choice(['Oslo', 'Lima'])},{pad}{int(rng.integers(0, 9))}")
    (tmp_path / "quoted.csv").write_text("\n".join(lines) + "\n")
    stored, _ = _both(tmp_path / "quoted.csv", tmp_path, block_bytes=block_bytes)
    assert stored.columns.tolist() == ["id", "name", "city", "n"] and len(stored) == 5000
    assert set(stored["name"]) == {"Smith, John", 'say "hi", then', "plain", "  kept, spaces"}
    assert set(stored["city"]) == {"Oslo", "Lima"} and str(stored["n"].dtype) == "int64"


# -- 4. decimal commas ---------------------------------------------------------------------------


@pytest.mark.parametrize("sep", [";", "\t"])
def test_decimal_commas_in_semicolon_and_tab_files_are_numbers(tmp_path, sep):
    rng = np.random.default_rng(1)
    values = rng.normal(10, 3, 100).round(2)
    frame = pd.DataFrame({"Datum": ["01.02.2020"] * 100, "Temperatur": values, "n": np.arange(100)})
    frame.to_csv(tmp_path / "de.csv", index=False, sep=sep, decimal=",")
    stored, table = _both(tmp_path / "de.csv", tmp_path)
    assert str(stored["Temperatur"].dtype) == "float64"
    np.testing.assert_allclose(stored["Temperatur"], values)
    assert str(stored["n"].dtype) == "int64" and stored["Datum"].iloc[0] == "01.02.2020"
    assert any("decimal commas" in n and "'Temperatur'" in n for n in _notes(table))


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("a;b;c\n1,5;2.25;x\n2,5;3.75;y\n", ["1,5", "2,5"]),  # a column with decimal points
        ("a\tb\n1,000\tx\n25,000\ty\n", ["1,000", "25,000"]),  # thousands commas, not decimals
    ],
)
def test_decimal_points_or_thousands_commas_rule_out_decimal_commas(tmp_path, text, kept):
    (tmp_path / "mixed.csv").write_text(text)
    stored, table = _both(tmp_path / "mixed.csv", tmp_path)
    assert stored["a"].tolist() == kept
    assert not any("decimal commas" in n for n in _notes(table))


# -- 5. headerless files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "width"),
    [
        # UCI adult.data: ', '-separated, '?' for gaps, no header.
        (
            "".join(
                f"{39 + i % 30}, {['State-gov', 'Private'][i % 2]}, {77516 + i}, {'?' if i == 7 else 40}, "
                f"{['<=50K', '>50K'][i % 3 == 0]}\n"
                for i in range(60)
            ),
            5,
        ),
        # UCI iris.data
        (
            "".join(
                f"5.{i % 10},3.{i % 7},1.4,0.2,Iris-{['setosa', 'virginica'][i % 2]}\n" for i in range(40)
            ),
            5,
        ),
        # a numeric dump (numpy.savetxt)
        ("".join(f"{i * 0.5:.3f},{i},{i % 3}\n" for i in range(50)), 3),
    ],
    ids=["adult", "iris", "numeric"],
)
def test_a_file_without_a_header_row_gets_column_names_and_a_warning(tmp_path, text, width):
    (tmp_path / "x.data.csv").write_text(text)
    stored, table = _both(tmp_path / "x.data.csv", tmp_path)
    assert stored.columns.tolist() == [f"column_{j}" for j in range(1, width + 1)]
    assert len(stored) == text.count("\n")  # the first line is a row
    assert str(stored["column_1"].dtype) in ("int64", "float64")
    if "State-gov" in text:
        assert set(stored["column_2"]) == {"State-gov", "Private"}
        assert str(stored["column_4"].dtype) == "float64" and stored["column_4"].isna().sum() == 1
    warning = [n["message"] for n in table.notes if n["level"] == "warning"]
    assert len(warning) == 1 and warning[0].startswith("no header row")
    assert f"column_1..column_{width}" in warning[0] and "add a line of column names" in warning[0]


@pytest.mark.parametrize(
    "text",
    [
        "id,2019,2020,name\n1,5,6,x\n2,7,8,y\n3,9,1,x\n",
        "year,value\n2019,1.5\n2020,2.5\n",
        "name,2019,2020\nOslo,5,6\nLima,7,8\n",
        "city,population\nOslo,700000\nLima,9000000\nOslo,700001\n",
        "0,1,2\n0.5,1.5,2.5\n1.5,2.5,3.5\n",  # pandas' names for a numpy array's columns
        "2019,2020,2021\n1.5,2.5,3.5\n2.5,3.5,4.5\n",
    ],
)
def test_a_real_header_is_kept(tmp_path, text):
    (tmp_path / "h.csv").write_text(text)
    stored, table = _both(tmp_path / "h.csv", tmp_path)
    assert stored.columns.tolist() == text.split("\n")[0].split(",")
    assert _notes(table) == []


@pytest.mark.parametrize(
    "text, names",
    [
        # R's write.csv (and so most of Rdatasets): the row names' column has an empty name
        ('"","mpg","cyl"\n"Mazda RX4",21,6\n"Datsun 710",22.8,4\n', ["column_1", "mpg", "cyl"]),
        ('"","x","y"\n"1",0.5,"a"\n"2",1.5,"b"\n"3",2.5,"a"\n', ["column_1", "x", "y"]),
        # a contingency table whose column names are numbers is still a header
        ('"","1940","1945","1950"\n"Food",22.2,44.5,59.6\n"Health",3.5,5.3,NA\n', ["column_1", "1940", "1945", "1950"]),
        ('"","0","1","2"\n"0",27,29,10\n"1",59,53,14\n', ["column_1", "0", "1", "2"]),
        ("a,,c\n1,2,3\n4,5,6\n", ["a", "column_2", "c"]),
    ],
)  # fmt: skip
def test_a_header_field_left_empty_names_its_column_by_position(tmp_path, text, names):
    (tmp_path / "r.csv").write_text(text)
    stored, table = _both(tmp_path / "r.csv", tmp_path)
    assert stored.columns.tolist() == names
    assert len(stored) == text.count("\n") - 1
    (note,) = _notes(table)
    assert "without a name" in note and next(n for n in names if n.startswith("column_")) in note


def test_a_generated_name_that_is_taken_is_a_clear_error(tmp_path):
    (tmp_path / "r.csv").write_text(",column_1\n1,2\n3,4\n")
    with pytest.raises(DataError, match="column_1"):
        _both(tmp_path / "r.csv", tmp_path)


def test_a_character_cut_at_the_end_of_the_sniffed_head_is_still_utf8(tmp_path):
    # One line longer than the 64 KiB head, with a two-byte character across its end.
    long = "x" * (64 * 1024 - len("note\n") - 1) + "é" * 10
    (tmp_path / "long.csv").write_text(f"note\n{long}\nshort\n", encoding="utf-8")
    stored, table = _both(tmp_path / "long.csv", tmp_path)
    assert stored["note"].tolist() == [long, "short"] and _notes(table) == []


def test_a_plain_file_gets_no_notes_and_the_default_reading(tmp_path):
    frame = _adultish(100)
    frame.to_csv(tmp_path / "plain.csv", index=False)
    stored, table = _both(tmp_path / "plain.csv", tmp_path)
    assert _notes(table) == [] and stored.columns.tolist() == frame.columns.tolist()


# -- 6. JSON sources -----------------------------------------------------------------------------


def _iris_records(rows: int) -> list[dict]:
    rng = np.random.default_rng(4)
    records = []
    for i in range(rows):
        record = {
            "sepalLength": round(float(rng.normal(5.8, 0.8)), 1),
            "petalWidth": int(rng.integers(0, 3)),
            "species": str(rng.choice(["setosa", "versicolor", "virginica"])),
            "measured": f"2020-01-{1 + i % 28:02d}",
        }
        if i == rows - 1:
            record["petalWidth"] = 1.5  # an integer field that turns float in the last block
            record["note"] = "late"  # a field first seen in the last record
        records.append(record)
    return records


@pytest.mark.parametrize("block_bytes", [4096, ingest.BLOCK_BYTES])
def test_json_lines_and_a_json_array_of_records_give_the_same_table(tmp_path, block_bytes):
    import json

    records = _iris_records(2000)
    (tmp_path / "iris.json").write_text(json.dumps(records))
    (tmp_path / "iris.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    array, _ = _both(tmp_path / "iris.json", tmp_path, block_bytes=block_bytes)
    lines, _ = _both(tmp_path / "iris.jsonl", tmp_path, block_bytes=block_bytes)
    pd.testing.assert_frame_equal(array, lines)
    assert array.columns.tolist() == ["sepalLength", "petalWidth", "species", "measured", "note"]
    assert len(array) == 2000 and str(array["petalWidth"].dtype) == "float64"
    assert array["measured"].iloc[0] == "2020-01-01"  # dates stay text, as in a CSV file
    assert array["note"].isna().sum() == 1999 and array["note"].iloc[-1] == "late"
    digests = {
        ingest.ingest(str(tmp_path / n), str(tmp_path), block_bytes=b).digest
        for n in ("iris.json", "iris.jsonl")
        for b in (4096, 1 << 20)
    }
    assert len(digests) == 1


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("obj.json", '{"a": 1}', "holds dict; expected an array of records"),
        ("bad.json", "[{", "is not valid JSON"),
        ("nested.jsonl", '{"a": {"b": 1}}\n', "field 'a' holds objects or lists"),
        ("mixed.jsonl", '{"a": 1}\n{"a": "x"}\n', "field 'a' holds number values in some records and string"),
        ("empty.json", "[]", "has no records"),
    ],
)
def test_json_that_is_not_a_table_gets_a_clear_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    for read in (
        lambda: ingest.ingest(str(tmp_path / name), str(tmp_path)),
        lambda: datasets.read_table(str(tmp_path / name)),
    ):
        with pytest.raises(DataError, match=message):
            read()


def test_a_json_array_over_the_limit_is_refused_with_the_way_out(tmp_path, monkeypatch):
    from provenflow.data import jsonl

    monkeypatch.setattr(jsonl, "JSON_LIMIT", 1000)
    (tmp_path / "big.json").write_text(json_text := "[" + ",".join('{"a": 1}' for _ in range(200)) + "]")
    assert len(json_text) > 1000
    with pytest.raises(DataError, match=r"over 0 MiB, which is read whole; write it as JSON Lines"):
        ingest.ingest(str(tmp_path / "big.json"), str(tmp_path))
