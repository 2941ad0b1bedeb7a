"""reproduce.compare on recorded values: an old data run, re-run by a newer provenflow."""

from provenflow.modeling.reproduce import Edge, RecordedRun, compare


def _run(dataset_hash: str, metrics: dict) -> RecordedRun:
    return RecordedRun(
        id="r", flow="data-run", name="d", parameters={}, inputs=[Edge("file", "d.csv", "a" * 64)],
        outputs=[Edge("dataset", "d", dataset_hash)], metrics=metrics, code_commit="c", code_diff_hash=None,
        packages=[],
    )  # fmt: skip


def test_a_metric_only_the_reproduction_records_is_no_difference():
    # A data run from before the streamed canonical form: other bytes, the same table, one metric fewer.
    original = _run("1" * 64, {"rows": 344.0, "columns": 8.0})
    again = _run("2" * 64, {"rows": 344.0, "columns": 8.0, "validated_rows": 344.0})
    assert compare(original, again, outputs_equivalent=True, code_source="recorded").verdict == "equivalent"
    lost = _run("2" * 64, {"rows": 344.0})
    assert compare(original, lost, outputs_equivalent=True, code_source="recorded").verdict == "different"
