"""The container image serves without Prefect, SQLAlchemy, Great Expectations or skl2onnx."""

import subprocess
import sys

from tests.conftest import REPO

NOT_IN_IMAGE = ["prefect", "sqlalchemy", "great_expectations", "skl2onnx", "onnx", "pydantic_settings"]


def test_serving_a_bundle_needs_only_the_image_packages(bundles):
    code = (
        "import sys\n"
        "from provenflow.serving.run import open_log, ServerOptions, main\n"
        "from provenflow.serving.bundle import load_bundle\n"
        "from provenflow.serving.app import create_app\n"
        "from provenflow.serving.predictlog import read_predictions\n"
        f"model = load_bundle({str(bundles['forest'])!r})\n"
        "assert model.runtime == 'onnx'\n"
        "create_app(model, None, None)\n"
        "print(' '.join(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert [m for m in NOT_IN_IMAGE if m in loaded] == []


def test_an_onnx_bundle_serves_without_unpickling(bundles):
    """Issue 9: with a checked ONNX graph there is no pickle to trust: scikit-learn is never imported."""
    code = (
        "import pickle, sys\n"
        "from provenflow.serving.bundle import load_bundle\n"
        "from provenflow.serving.inputs import parse_request\n"
        "loads = pickle.loads\n"
        "def refuse(*a, **k): raise AssertionError('unpickled')\n"
        "pickle.loads = refuse\n"
        f"model = load_bundle({str(bundles['forest'])!r})\n"
        "assert model.runtime == 'onnx'\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'\n"
        "pickle.loads = loads\n"
        "assert model.pipeline.predict is not None  # the pickle still loads when asked\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
