"""bench/README.md's figures table marks a figure that the run before measured more than 20% apart."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from common import figures_markdown, reproduced


def _summary(commit: str, **values: float) -> dict:
    return {
        "commit": commit,
        "machine": "test",
        "figures": {
            name: {"value": v, "unit": "×", "target": 1.5, "better": "lower", "met": v <= 1.5, "bench": "x.py"}
            for name, v in values.items()
        },
    }


def test_within_twenty_percent_is_reproduced_and_beyond_is_not():
    assert reproduced(1.0, 1.19) and reproduced(1.19, 1.0)
    assert not reproduced(1.0, 1.3)
    assert reproduced(1.0, None) is None


def test_table_marks_the_figure_that_moved_and_only_it():
    table = figures_markdown(_summary("b", steady=1.0, moved=2.0, new=1.0), _summary("a", steady=1.1, moved=1.0))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "not reproduced" in rows["moved"]
    assert "not reproduced" not in rows["steady"] and "| 1.1 |" in rows["steady"]
    assert "not reproduced" not in rows["new"]
    assert "commit `a`" in table
