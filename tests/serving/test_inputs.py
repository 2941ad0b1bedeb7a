"""Request parsing and checking against the signature: pure, table-driven."""

from __future__ import annotations

import math
import re

import orjson
import pytest

from provenflow.serving import inputs
from provenflow.serving.inputs import Feature, RequestError, parse_request

FEATURES = (Feature("bill_length_mm", "numeric"), Feature("island", "categorical"))
GOOD = {"bill_length_mm": 39.1, "island": "Dream"}


def parse(payload, max_rows=100):
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return parse_request(body, FEATURES, max_rows)


@pytest.mark.parametrize(
    "payload",
    [
        {"records": [GOOD, {"bill_length_mm": None, "island": None}]},
        [GOOD, {"bill_length_mm": None, "island": None}],
        {"columns": {"bill_length_mm": [39.1, None], "island": ["Dream", None]}},
    ],
    ids=["records", "bare-list", "columns"],
)
def test_three_body_shapes_give_the_same_batch(payload):
    batch = parse(payload)
    assert batch.rows == 2
    assert batch.columns["bill_length_mm"][0] == 39.1 and math.isnan(batch.columns["bill_length_mm"][1])
    assert batch.columns["island"][0] == "Dream" and batch.columns["island"][1] != batch.columns["island"][1]


def test_integers_are_numbers():
    assert parse([{"bill_length_mm": 40, "island": "Biscoe"}]).columns["bill_length_mm"].dtype == "float64"


@pytest.mark.parametrize(
    ("payload", "status", "field", "row", "message"),
    [
        (b'{"records": [', 422, None, None, "not valid JSON"),
        (b"", 422, None, None, "body is empty"),
        (b'[{"bill_length_mm": NaN, "island": "Dream"}]', 422, None, None, "not valid JSON"),
        (b'[{"bill_length_mm": 1e400, "island": "Dream"}]', 422, None, None, "not valid JSON"),
        ({"records": []}, 422, None, None, "no rows"),
        ({"columns": {"bill_length_mm": [], "island": []}}, 422, None, None, "no rows"),
        ([{"island": "Dream"}], 422, "bill_length_mm", 0, "missing column 'bill_length_mm' in row 0"),
        ([GOOD, {**GOOD, "bill_lenght_mm": 1}], 422, "bill_lenght_mm", 1, "Did you mean 'bill_length_mm'"),
        (
            [{**GOOD, "bill_length_mm": "39.1"}],
            422,
            "bill_length_mm",
            0,
            "expected a number or null.*got a string '39.1'",
        ),
        ([{**GOOD, "bill_length_mm": True}], 422, "bill_length_mm", 0, "got a boolean True"),
        # Before: passed the check; the model then refused the request without a field or row.
        ([GOOD, {**GOOD, "bill_length_mm": 1e300}], 422, "bill_length_mm", 1, r"within ±3.4e38 .*got 1e\+300"),
        ([GOOD, {**GOOD, "island": 3}], 422, "island", 1, "expected a string or null.*got a number 3"),
        ([{**GOOD, "island": ["Dream"]}], 422, "island", 0, "got a list"),
        ([GOOD, 5], 422, None, 1, "row 1 is a number; expected an object"),
        ({"rows": [GOOD]}, 422, "rows", None, "unknown top-level key 'rows'"),
        ({"records": [GOOD], "columns": {}}, 422, None, None, "not both"),
        ({"records": GOOD}, 422, "records", None, "must be a list"),
        ("hello", 422, None, None, "got a string"),
        (
            {"columns": {"bill_length_mm": [1.0, 2.0], "island": ["Dream"]}},
            422,
            None,
            None,
            "different lengths",
        ),
        (
            {"columns": {"bill_length_mm": 1.0, "island": ["Dream"]}},
            422,
            "bill_length_mm",
            None,
            "must be a list",
        ),
        ([GOOD] * 101, 413, None, None, "101 rows, more than this server's limit of 100"),
    ],
)
def test_bad_requests_name_the_problem(payload, status, field, row, message):
    with pytest.raises(RequestError) as info:
        parse(payload)
    error = info.value
    assert error.status == status
    first = error.problems[0]
    assert (first.field, first.row) == (field, row)
    assert re.search(message, first.message), first.message


def test_every_bad_row_is_counted_and_the_list_is_capped():
    with pytest.raises(RequestError) as info:
        parse([{**GOOD, "bill_length_mm": "x"}] * 50)
    body = info.value.body()
    assert body["count"] == 50 and len(body["problems"]) == 20
    assert "and 49 more problems" in body["error"]


# -- big bodies are parsed in slices ---------------------------------------------------------

TRICKY = [
    GOOD,
    {"bill_length_mm": None, "island": 'a "quoted" },{ island \\'},
    {"island": "\\\\", "bill_length_mm": 1e30},
    {"bill_length_mm": -0.0, "island": '[{"}]\\"'},
]


def sliced_and_whole(body: bytes, monkeypatch, max_rows: int = 10_000):
    """parse_request with 64-byte slices, and with one orjson.loads: the outcome of each."""

    def outcome():
        try:
            batch = parse_request(body, FEATURES, max_rows)
            return {k: [None if v != v else v for v in c.tolist()] for k, c in batch.columns.items()}
        except RequestError as exc:
            return exc.status, exc.total, [(p.field, p.row) for p in exc.problems]

    monkeypatch.setattr(inputs, "SLICE_BYTES", 64)
    sliced = outcome()
    monkeypatch.setattr(inputs, "SLICE_BYTES", 1 << 40)
    return sliced, outcome()


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(TRICKY * 50),
        orjson.dumps({"records": TRICKY * 50}),
        orjson.dumps({"records": TRICKY * 50}, option=orjson.OPT_INDENT_2),
        b' \n{ "records" :\t[' + b" ,\n ".join(orjson.dumps(r) for r in TRICKY * 30) + b"\n]\n}\n",
        orjson.dumps([*TRICKY * 20, {"bill_length_mm": "x", "island": 3}, *TRICKY * 20, {"island": "y"}]),
        orjson.dumps([*TRICKY * 20, {"bill_length_mm": {"nested": [1, {"a": "}"}]}, "island": "D"}, *TRICKY]),
    ],
    ids=["bare-list", "records", "indented", "odd-spacing", "bad-rows", "nested-value"],
)
def test_slices_give_exactly_what_one_parse_gives(body, monkeypatch):
    assert inputs.record_slices(body, inputs.string_quotes(body)) is not None
    sliced, whole = sliced_and_whole(body, monkeypatch)
    if isinstance(whole, dict):
        assert sliced == whole
    else:  # one parse stops at the first bad shape; slices go on, so they may name more problems
        assert sliced[0] == whole[0] == 422 and set(whole[2]) <= set(sliced[2])


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(TRICKY * 50)[:-1] + b",]",  # trailing comma
        orjson.dumps(TRICKY * 50).replace(b"},{", b"}{", 1),  # missing comma
        orjson.dumps(TRICKY * 50).replace(b"},{", b"}},{", 1),  # a brace too many
        orjson.dumps({"records": TRICKY * 50})[:-1] + b', "more": 1}',
        orjson.dumps(TRICKY * 50) + b"}",
        orjson.dumps(TRICKY * 50)[:-40],  # cut short
    ],
)
def test_invalid_big_bodies_are_refused_as_when_parsed_whole(body, monkeypatch):
    sliced, whole = sliced_and_whole(body, monkeypatch)
    assert isinstance(whole, tuple) and isinstance(sliced, tuple) and sliced[0] == whole[0] == 422


def test_too_many_rows_in_slices_is_413(monkeypatch):
    body = orjson.dumps([GOOD] * 1000)
    monkeypatch.setattr(inputs, "SLICE_BYTES", 64)
    with pytest.raises(RequestError) as caught:
        parse_request(body, FEATURES, 100)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    "body",
    [
        b"[" + b"1," * 500_000 + b"1]",
        b'{"columns": {"bill_length_mm": [' + b"1," * 500_000 + b'1], "island": []}}',
    ],
    ids=["bare-numbers", "one-long-column"],
)
def test_a_body_with_too_many_values_is_refused_before_parsing(body, monkeypatch):
    monkeypatch.setattr(inputs, "SLICE_BYTES", 64)
    monkeypatch.setattr(inputs.orjson, "loads", None)  # must not be reached
    with pytest.raises(RequestError) as caught:
        parse_request(body, FEATURES, 1000)
    assert caught.value.status == 413 and "split it" in caught.value.summary


@pytest.mark.parametrize("rows", [2, 40_000], ids=["small", "sliced"])
def test_ignored_columns_may_come_with_every_row_and_others_are_still_refused(rows):
    ignored = frozenset({"passenger_id", "species"})
    records = [{**GOOD, "passenger_id": i, "species": "Adelie"} for i in range(rows)]
    body = orjson.dumps({"records": records})
    assert rows == 2 or len(body) > inputs.SLICE_BYTES
    batch = parse_request(body, FEATURES, 100_000, ignored)
    assert set(batch.columns) == {"bill_length_mm", "island"} and batch.rows == rows
    columns = orjson.dumps({"columns": {"bill_length_mm": [1.0], "island": ["Dream"], "passenger_id": [7]}})
    assert parse_request(columns, FEATURES, 10, ignored).rows == 1
    records[-1]["colour"] = "red"
    with pytest.raises(RequestError) as caught:
        parse_request(orjson.dumps({"records": records}), FEATURES, 100_000, ignored)
    assert [p.field for p in caught.value.problems] == ["colour"]
