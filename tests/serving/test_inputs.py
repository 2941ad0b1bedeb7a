"""Request parsing and checking against the signature: pure, table-driven."""

from __future__ import annotations

import math
import re

import orjson
import pytest

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
