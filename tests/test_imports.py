"""The core stays free of Prefect and of heavy libraries at import time (fast CLI, fast tests)."""

import subprocess
import sys

HEAVY = ["prefect", "sklearn", "great_expectations"]


def _modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_core_does_not_import_prefect_or_heavy_libraries():
    loaded = _modules_after(
        "import provenflow, provenflow.tracking, provenflow.lineage, provenflow.catalog, "
        "provenflow.datasets, provenflow.validation, provenflow.training, provenflow.server"
    )
    assert not [m for m in HEAVY if m in loaded]


def test_cli_start_up_imports_nothing_heavy():
    loaded = _modules_after("import provenflow.cli.main")
    assert not [m for m in [*HEAVY, "pandas", "sqlalchemy"] if m in loaded]
