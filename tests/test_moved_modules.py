"""Import paths from before the core moved into sub-packages keep working (scripts, notebooks, pickles)."""

import pickle
import subprocess
import sys
import warnings

import pytest


def test_an_old_path_is_the_module_at_its_new_place_with_a_deprecation_warning():
    from provenflow.monitoring import shadow

    with pytest.warns(DeprecationWarning, match="provenflow.shadow moved to provenflow.monitoring.shadow"):
        import provenflow.shadow as old
    assert old is shadow
    from provenflow.drift.stats import psi  # a submodule of a moved package
    from provenflow.monitoring.drift import stats

    assert psi is stats.psi


def test_a_name_that_never_existed_still_fails():
    with pytest.raises(ModuleNotFoundError):
        import provenflow.no_such_module  # noqa: F401


def test_pickled_models_keep_naming_provenflow_preprocessing():
    """Stored models pickle DateFeatures by its old path: their bytes (and hashes) stay the same."""
    from provenflow.modeling.preprocessing import DateFeatures

    data = pickle.dumps(DateFeatures({"day": None}), protocol=5)
    assert b"provenflow.preprocessing" in data and b"modeling" not in data
    code = "import pickle, sys; obj = pickle.loads(sys.stdin.buffer.read()); print(type(obj).__module__)"
    with warnings.catch_warnings():
        result = subprocess.run([sys.executable, "-W", "error", "-c", code], input=data, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip() == "provenflow.preprocessing"


def test_tracking_package_still_gives_the_run():
    from provenflow.tracking import Run, start
    from provenflow.tracking.run import Run as NewRun

    assert Run is NewRun and callable(start)
