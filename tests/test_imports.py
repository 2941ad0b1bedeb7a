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
        "import provenflow, provenflow.tracking.run, provenflow.tracking.lineage, provenflow.tracking.catalog, "
        "provenflow.data.datasets, provenflow.data.validation, provenflow.modeling.training, provenflow.platform.server"
    )
    assert not [m for m in HEAVY if m in loaded]


def test_cli_start_up_imports_nothing_heavy():
    loaded = _modules_after("import provenflow.cli.main")
    assert not [m for m in [*HEAVY, "pandas", "sqlalchemy"] if m in loaded]


def test_pandas_stays_below_3_1_for_evidently():
    """evidently 0.7 imports pandas' infer_dtype_from_object, removed in pandas 3.1."""
    import pandas

    major, minor = (int(x) for x in pandas.__version__.split(".")[:2])
    assert (major, minor) < (3, 1)
    import evidently  # noqa: F401 - the pin is there so that this import works
