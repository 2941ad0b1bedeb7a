"""Small hostile inputs of issue 19, item 7: .json duplicate keys and deep nesting (one line each)."""

from __future__ import annotations

import pytest

from provenflow.errors import DataError


def ingest(path, tmp_path):
    from provenflow.data import ingest as ingesting

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return ingesting.ingest(str(path), str(work), None)


def test_json_duplicate_keys_are_refused_like_jsonl(tmp_path):
    (tmp_path / "dup.json").write_text('[{"a": 1, "b": 2}, {"a": 3, "a": 4, "b": 5}]')
    with pytest.raises(DataError) as refused:
        ingest(tmp_path / "dup.json", tmp_path)
    assert "'a'" in str(refused.value) and "twice" in str(refused.value) and "\n" not in str(refused.value)


def test_deep_nested_json_is_one_line(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError) as refused:
        ingest(tmp_path / "deep.json", tmp_path)
    assert "nest" in str(refused.value) and "\n" not in str(refused.value)
