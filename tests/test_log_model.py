"""A team's own training code: pf.dataset, pf.log_dataset and pf.log_model (no Prefect here), and a
model whose pipeline uses the team's own transformer, served over HTTP from another folder."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

import provenflow as pf
from provenflow.data import versioning
from provenflow.errors import IntegrityError, ModelCodeError, ProvenflowError, TrainingError
from provenflow.ledger import models as m
from provenflow.ledger.refs import resolve_model
from provenflow.modeling import owncode, signing
from provenflow.serving.bundle import export_bundle, load_bundle
from provenflow.workspace import Workspace
from tests.conftest import PENGUINS
from tests.serving.conftest import records_of, start_server

FEATURES = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm"]

TRANSFORMER = """
    from sklearn.base import BaseEstimator, TransformerMixin

    import {helper} as helper


    class BillRatio(BaseEstimator, TransformerMixin):
        '''The team's own feature: bill length over depth (gaps filled with the training means).'''

        def fit(self, X, y=None):
            self.means_ = X.mean()
            return self

        def transform(self, X):
            X = X.fillna(self.means_)
            X = X.assign(ratio=helper.ratio(X["bill_length_mm"], X["bill_depth_mm"]))
            return X.to_numpy()
"""


@pytest.fixture
def ws(project) -> Workspace:
    return Workspace.open(f"sqlite:///{project}/ledger.db", str(project / "store"), fsync=False)


@pytest.fixture
def penguins_frame() -> pd.DataFrame:
    return pd.read_csv(PENGUINS)


@pytest.fixture
def team_module(project):
    """The team's repository: a features module (uniquely named, as each test imports its own) that
    imports a helper module of the project, both importable as the team's code is."""
    suffix = uuid.uuid4().hex[:8]
    name, helper = f"features_{suffix}", f"helpers_{suffix}"
    (project / f"{helper}.py").write_text("def ratio(a, b):\n    return a / b\n")
    (project / f"{name}.py").write_text(textwrap.dedent(TRANSFORMER.format(helper=helper)))
    sys.path.insert(0, str(project))
    module = importlib.import_module(name)
    yield module
    sys.path.remove(str(project))
    for gone in (name, helper):
        sys.modules.pop(gone, None)


def own_pipeline(module, frame: pd.DataFrame):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    labelled = frame.dropna(subset=["species"])
    return make_pipeline(module.BillRatio(), LogisticRegression(max_iter=1000)).fit(
        labelled[FEATURES], labelled["species"]
    )


# -- one clear line for each mistake ---------------------------------------------------


def test_log_model_outside_a_run_says_so(penguins_frame):
    with pytest.raises(ProvenflowError, match=r"provenflow.log_model needs an active run: call it inside"):
        pf.log_model(object(), name="m", input_example=penguins_frame)


def test_an_object_without_predict_is_refused(ws, penguins_frame):
    with pf.start("no-predict", workspace=ws), pytest.raises(TrainingError) as caught:
        pf.log_model({"weights": [1, 2]}, name="m", input_example=penguins_frame[FEATURES])
    assert "builtins.dict as a model: it has no predict(DataFrame) method" in str(caught.value)
    assert "\n" not in str(caught.value)
    with ws.ledger.reader() as session:
        assert session.query(m.ModelVersion).count() == 0


def test_an_input_example_the_model_cannot_predict_on_is_refused(ws, team_module, penguins_frame):
    model = own_pipeline(team_module, penguins_frame)
    wrong = penguins_frame[["island", "sex"]].head()
    with pf.start("bad-example", workspace=ws), pytest.raises(TrainingError) as caught:
        pf.log_model(model, name="m", input_example=wrong)
    message = str(caught.value)
    assert message.startswith("the model (Pipeline) cannot predict on input_example (KeyError")
    assert "\n" not in message


def test_a_class_from_the_script_itself_is_refused(ws, penguins_frame):
    class Local:  # pickles under this test module; __main__ is what a script's own class is
        def predict(self, frame):
            return np.zeros(len(frame))

    Local.__module__, Local.__qualname__ = "__main__", "Local"
    sys.modules["__main__"].Local = Local  # so pickle finds it, as it would in a script
    try:
        with (
            pf.start("main-class", workspace=ws),
            pytest.raises(TrainingError, match=r"defined in the script"),
        ):
            pf.log_model(Local(), name="m", input_example=penguins_frame[FEATURES])
    finally:
        del sys.modules["__main__"].Local


# -- datasets --------------------------------------------------------------------------


def test_dataset_and_log_dataset_go_the_data_run_way(ws, project, penguins_frame):
    with pf.start("prepare", workspace=ws) as run:
        logged = pf.log_dataset(PENGUINS, name="penguins")
        cleaned = pf.log_dataset(penguins_frame.dropna(), name="penguins-clean")
    # The same canonical object data-run's ingest makes of the same file.
    assert logged.hash == versioning.ingest_source(ws, "penguins", str(PENGUINS)).output.digest.hex
    with pf.start("prepare-again", workspace=ws):  # the same content: the same version, not a new one
        again = pf.log_dataset(penguins_frame.dropna(), name="penguins-clean")
    assert str(again) == str(cleaned)
    with pf.start("train", workspace=ws) as reader:
        frame = pf.dataset("penguins-clean@latest")
    assert len(frame) == len(penguins_frame.dropna())
    assert reader.summary.inputs[0]["name"] == str(cleaned)
    with ws.ledger.reader() as session:
        versions = session.query(m.DatasetVersion).filter_by(name="penguins-clean").all()
        assert len(versions) == 1 and versions[0].run_id == run.id
        assert set(versions[0].profile["columns"]) == set(penguins_frame.columns)
    outputs = {o["name"] for o in run.summary.outputs}
    assert {str(logged), str(cleaned)} <= outputs


def test_log_dataset_breaking_its_suite_fails_the_run(ws, penguins_frame):
    with pf.start("v1", workspace=ws):
        pf.log_dataset(penguins_frame, name="penguins")
    broken = penguins_frame.assign(body_mass_g="heavy")
    with pytest.raises(ProvenflowError, match=r"expectations in suite"), pf.start("v2", workspace=ws):
        pf.log_dataset(broken, name="penguins")
    with ws.ledger.reader() as session:
        assert session.query(m.DatasetVersion).filter_by(name="penguins").count() == 1


# -- models, with the team's own code --------------------------------------------------


def test_log_model_registers_a_sealed_version_with_its_code(ws, team_module, penguins_frame):
    with pf.start("train", workspace=ws) as run:
        frame = pf.dataset(str(_dataset(ws, penguins_frame)))
        labelled = frame.dropna(subset=["species"])
        model = own_pipeline(team_module, labelled)
        pf.metric("custom", 0.5)
        logged = pf.log_model(model, name="penguins-species", input_example=labelled[FEATURES].head(),
                              eval=(labelled[FEATURES], labelled["species"]))  # fmt: skip
    assert str(logged) == "penguins-species@1"
    with pf.start("train-again", workspace=ws):  # the same model and code: the same bytes, the same version
        again = pf.log_model(model, name="penguins-species", input_example=labelled[FEATURES].head())
    assert str(again) == "penguins-species@1" and again.hash == logged.hash
    assert logged.format == owncode.FORMAT and logged.flavor == "sklearn"
    assert set(logged.code) == {f"{team_module.__name__}.py", f"helpers_{team_module.__name__[9:]}.py"}
    with ws.ledger.reader() as session:
        version = resolve_model(session, "penguins-species@1")
        signing.verify(signing.ModelIdentity.of(version), version.seal, signing.signing_key())
        assert version.task == "classification" and version.signature["classes"] == [
            "Adelie",
            "Chinstrap",
            "Gentoo",
        ]
        assert [i["name"] for i in version.signature["inputs"]] == FEATURES
        assert version.signature["target"]["name"] == "species"
        assert version.metrics["custom"] == 0.5 and version.metrics["accuracy"] > 0.9
        # A pipeline's hyper-parameters are its steps' own, as set_params names them, not a repr of the steps.
        assert version.params["logisticregression__max_iter"] == 1000 and "steps" not in version.params
        from provenflow.storage.references import referenced_hashes

        # The example rows a reproduction compares predictions on: stored, and kept by gc (a run edge).
        assert version.signature["input_example"] in referenced_hashes(session)
        kinds = {io.kind for io in session.get(m.Run, run.id).io}
    assert {"dataset", "model", "calibration"} <= kinds  # lineage, and CBPE's held-out probabilities


def test_own_code_model_serves_over_http_from_another_folder(ws, team_module, penguins_frame, tmp_path):
    labelled = penguins_frame.dropna(subset=["species"])
    model = own_pipeline(team_module, labelled)
    with pf.start("train", workspace=ws):
        logged = pf.log_model(model, name="penguins-species", input_example=labelled[FEATURES].head())
    bundle = tmp_path / "bundle"
    export_bundle(ws, str(logged), bundle)
    # The server runs from the provenflow checkout, with nothing of the project on its path.
    server = start_server(bundle, str(tmp_path / "log"))
    try:
        rows = labelled.sample(40, random_state=1)
        answer = httpx.post(f"{server.url}/predict", json={"records": records_of(rows, FEATURES)}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == list(model.predict(rows[FEATURES]))
    finally:
        server.stop()


def test_a_model_whose_code_is_missing_names_the_module(ws, project, tmp_path, penguins_frame):
    """Code outside the project is not carried (an installed package is the image's business): where
    it is not installed either, loading says which module is missing, in one line."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    name = f"vendor_{uuid.uuid4().hex[:8]}"
    (outside / f"{name}.py").write_text(
        "class Constant:\n    def predict(self, frame):\n        return [1.0] * len(frame)\n"
    )
    sys.path.insert(0, str(outside))
    try:
        constant = importlib.import_module(name).Constant()
        with pf.start("train", workspace=ws):
            logged = pf.log_model(constant, name="constant", input_example=penguins_frame[FEATURES].head())
        assert logged.code == {} and logged.task == "regression"
        bundle = tmp_path / "bundle"
        export_bundle(ws, str(logged), bundle)
    finally:
        sys.path.remove(str(outside))
        sys.modules.pop(name, None)
    with pytest.raises(ModelCodeError) as caught:
        load_bundle(bundle)
    assert f"model constant@1 needs module {name!r}, which is neither carried" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_changed_code_in_a_bundle_is_refused(ws, team_module, penguins_frame, tmp_path):
    labelled = penguins_frame.dropna(subset=["species"])
    with pf.start("train", workspace=ws):
        logged = pf.log_model(
            own_pipeline(team_module, labelled), name="m", input_example=labelled[FEATURES].head()
        )
    bundle = tmp_path / "bundle"
    export_bundle(ws, str(logged), bundle)
    archive = (bundle / "model.pkl").read_bytes()
    source = Path(team_module.__file__).read_bytes()
    assert source in archive  # the code is in the model's own bytes (stored uncompressed)
    (bundle / "model.pkl").write_bytes(archive.replace(b"a / b", b"a * b"))
    with pytest.raises(IntegrityError, match="The bundle was altered"):
        load_bundle(bundle)


def test_a_plain_python_model_and_an_onnx_model(ws, penguins_frame):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = penguins_frame[FEATURES].dropna().head(20)
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X"], ["Y"], keepdims=0, axes=[1])],
        "sum", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None])],
    )  # fmt: skip
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)])
    onnx.checker.check_model(proto)
    with pf.start("train", workspace=ws):
        logged = pf.log_model(proto, name="summer", input_example=x)
    assert logged.flavor == "onnx" and logged.task == "regression"
    with ws.ledger.reader() as session:
        from provenflow.modeling.training import load_model

        loaded = load_model(ws.store, resolve_model(session, str(logged)))
    np.testing.assert_allclose(loaded.predict(x), x.sum(axis=1).to_numpy(), rtol=1e-5)


def _dataset(ws: Workspace, frame: pd.DataFrame):
    with pf.start("prepare", workspace=ws):
        return pf.log_dataset(frame, name="penguins")


def test_drift_reference_is_the_input_dataset_or_the_frame_given(ws, team_module, penguins_frame):
    from provenflow.tasks.drift import load_reference

    labelled = penguins_frame.dropna(subset=["species"])
    model = own_pipeline(team_module, labelled)
    with pf.start("no-data", workspace=ws):
        bare = pf.log_model(model, name="bare", input_example=labelled[FEATURES].head())
    with pytest.raises(ProvenflowError, match=r"bare@1 records no training dataset .* reference=frame"):
        load_reference.fn(ws, str(bare))
    with pf.start("with-reference", workspace=ws):
        given = pf.log_model(model, name="given", input_example=labelled[FEATURES].head(),
                             reference=labelled[FEATURES])  # fmt: skip
    monitored = load_reference.fn(ws, str(given))
    assert monitored.training_dataset.startswith("given-reference@")
    assert set(monitored.profile["columns"]) == set(FEATURES)
    logged = _dataset(ws, penguins_frame)
    with pf.start("from-dataset", workspace=ws):
        frame = pf.dataset(str(logged))
        read = pf.log_model(model, name="read", input_example=frame[FEATURES].head())
    assert load_reference.fn(ws, str(read)).training_dataset.startswith("penguins@")


def test_two_models_carrying_different_versions_of_one_module_load_side_by_side(
    ws, project, tmp_path, penguins_frame
):
    """A server process loads version 1, then version 2 whose features module changed: each model
    gets its own code, not the module the first load left in sys.modules."""
    name = f"scorer_{uuid.uuid4().hex[:8]}"
    rows = penguins_frame[FEATURES].head()
    bundles = []
    sys.path.insert(0, str(project))
    try:
        for value in (1.0, 2.0):
            (project / f"{name}.py").write_text(
                f"class Scorer:\n    def predict(self, frame):\n        return [{value}] * len(frame)\n"
            )
            sys.modules.pop(name, None)
            importlib.invalidate_caches()
            scorer = importlib.import_module(name).Scorer()
            with pf.start("train", workspace=ws):
                logged = pf.log_model(scorer, name="scorer", input_example=rows)
            bundles.append(tmp_path / f"bundle-{value}")
            export_bundle(ws, str(logged), bundles[-1])
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(name, None)
    (project / f"{name}.py").unlink()  # only the carried copies are left
    first, second = (load_bundle(b).pipeline for b in bundles)
    assert list(first.predict(rows)) == [1.0] * 5
    assert list(second.predict(rows)) == [2.0] * 5


def test_the_promotion_gate_says_when_a_logged_model_has_no_target(ws, team_module, penguins_frame):
    from provenflow.modeling.registry import PromotionError
    from provenflow.tasks.registry import score_on_holdout

    logged = _dataset(ws, penguins_frame)
    labelled = penguins_frame.dropna(subset=["species"])
    with pf.start("train", workspace=ws):
        pf.dataset(str(logged))
        unlabelled = pf.log_model(
            own_pipeline(team_module, labelled), name="m", input_example=labelled[FEATURES]
        )
        labelled_one = pf.log_model(
            own_pipeline(team_module, labelled), name="n", input_example=labelled[FEATURES], target="species"
        )
    with pytest.raises(PromotionError, match=r"m@1 records no target column, so the gate cannot score it"):
        score_on_holdout.fn(ws, str(unlabelled), "production", None)
    scores = score_on_holdout.fn(ws, str(labelled_one), "production", None)
    assert scores.candidate_metrics["accuracy"] > 0.9


def test_the_public_surface_resolves():
    assert {"dataset", "log_dataset", "log_model", "LoggedModel", "LoggedDataset"} <= set(pf.__all__)
    for name in pf.__all__:
        assert getattr(pf, name) is not None, name


def test_code_paths_carries_what_the_scan_cannot_see(ws, project, tmp_path, penguins_frame):
    """A module the model imports only inside a function is not in the pickle: code_paths carries it."""
    suffix = uuid.uuid4().hex[:8]
    name, helper = f"lazy_{suffix}", f"lazyhelper_{suffix}"
    (project / f"{helper}.py").write_text("VALUE = 3.0\n")
    (project / f"{name}.py").write_text(
        f"class Model:\n    def predict(self, frame):\n        import {helper}\n"
        f"        return [{helper}.VALUE] * len(frame)\n"
    )
    rows = penguins_frame[FEATURES].head()
    sys.path.insert(0, str(project))
    try:
        model = importlib.import_module(name).Model()
        with pf.start("train", workspace=ws):
            scanned = pf.log_model(model, name="scanned", input_example=rows)
            given = pf.log_model(
                model, name="given", input_example=rows, code_paths=[project / f"{helper}.py"]
            )
        assert set(scanned.code) == {f"{name}.py"}
        assert set(given.code) == {f"{name}.py", f"{helper}.py"}
        export_bundle(ws, str(given), tmp_path / "bundle")
    finally:
        sys.path.remove(str(project))
        for gone in (name, helper):
            sys.modules.pop(gone, None)
    for file in (name, helper):
        (project / f"{file}.py").unlink()
    assert list(load_bundle(tmp_path / "bundle").pipeline.predict(rows)) == [3.0] * 5


BOOSTER = """
import numpy as np


class XGBLikeClassifier:
    '''What XGBoost's and LightGBM's scikit-learn API look like, without installing either.'''

    _estimator_type = "classifier"

    def __init__(self, max_depth=3):
        self.max_depth = max_depth

    def get_params(self, deep=True):
        return {"max_depth": self.max_depth}

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.array([self.classes_[0]] * len(X))

    def predict_proba(self, X):
        p = np.zeros((len(X), len(self.classes_)))
        p[:, 0] = 1.0
        return p
"""


def test_an_estimator_with_the_scikit_learn_api_is_the_sklearn_flavor(ws, project, penguins_frame):
    name = f"boost_{uuid.uuid4().hex[:8]}"
    (project / f"{name}.py").write_text(BOOSTER)
    sys.path.insert(0, str(project))
    try:
        labelled = penguins_frame.dropna(subset=["species"])
        model = (
            importlib.import_module(name)
            .XGBLikeClassifier(max_depth=5)
            .fit(labelled[FEATURES], labelled["species"])
        )
        with pf.start("train", workspace=ws) as run:
            logged = pf.log_model(model, name="booster", input_example=labelled[FEATURES].head(),
                                  eval=(labelled[FEATURES], labelled["species"]))  # fmt: skip
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(name, None)
    assert (logged.flavor, logged.task) == ("sklearn", "classification")
    with ws.ledger.reader() as session:
        version = resolve_model(session, str(logged))
        assert version.params == {"max_depth": 5} and version.estimator == f"{name}.XGBLikeClassifier"
        assert version.signature["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
        assert "calibration" in {io.kind for io in session.get(m.Run, run.id).io}


def test_dataset_reads_the_version_a_reproduction_pins(ws, project, penguins_frame, monkeypatch):
    import json

    from provenflow.settings import get_settings

    first = _dataset(ws, penguins_frame)
    with pf.start("newer", workspace=ws):
        pf.log_dataset(penguins_frame.head(100), name="penguins")
    pins = project / "pins.json"
    pins.write_text(json.dumps({"penguins": str(first)}))
    monkeypatch.setenv("PROVENFLOW_REPRODUCTION_PINS", str(pins))
    get_settings.cache_clear()
    with pf.start("replay", workspace=ws) as run:
        frame = pf.dataset("penguins@latest")
    assert len(frame) == len(penguins_frame) and run.summary.inputs[0]["name"] == str(first)


def test_loading_an_own_code_model_writes_no_folder(ws, team_module, penguins_frame, tmp_path, monkeypatch):
    """Each load used to extract the carried code into a new mkdtemp folder that was never removed (a
    server reloading its model, a drift check per run): now the code is imported from the model's own
    bytes in memory, so loading twice leaves nothing behind, and the model's code still reads as source."""
    import inspect
    import tempfile

    labelled = penguins_frame.dropna(subset=["species"])
    model = own_pipeline(team_module, labelled)
    with pf.start("train", workspace=ws):
        logged = pf.log_model(model, name="m", input_example=labelled[FEATURES].head())
    export_bundle(ws, str(logged), tmp_path / "bundle")
    for name in logged.code:  # as in a server started elsewhere: only the carried copies are left
        sys.modules.pop(name.removesuffix(".py"), None)
        (Path(team_module.__file__).parent / name).unlink()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where mkdtemp would write
    rows = labelled[FEATURES].head()
    for _ in range(2):
        loaded = load_bundle(tmp_path / "bundle").pipeline
        assert list(loaded.predict(rows)) == list(model.predict(rows))
    assert list(scratch.iterdir()) == []
    carried = type(loaded.steps[0][1])
    assert carried.__module__ == team_module.__name__ and carried is not team_module.BillRatio
    assert "helper.ratio" in inspect.getsource(carried)  # tracebacks show the carried source


SLUGGED = """
from slugify import slugify  # python-slugify: installed here, not one of the serving packages


class Slugged:
    '''Labels from the team's pipeline, as slugs.'''

    def __init__(self, pipeline):
        self.pipeline = pipeline

    def predict(self, frame):
        return [slugify(str(label)) for label in self.pipeline.predict(frame)]
"""


def slugged_model(project, team_module, frame):
    """A model whose carried code imports an installed distribution the serving image lacks."""
    name = f"slugged_{uuid.uuid4().hex[:8]}"
    (project / f"{name}.py").write_text(SLUGGED)
    return importlib.import_module(name).Slugged(own_pipeline(team_module, frame))


def test_the_distributions_carried_code_imports_are_recorded_and_checked(ws, project, team_module, penguins_frame, tmp_path):
    """Before, a model whose code imported python-slugify recorded nothing of it: a server or image
    without it failed deep in the unpickling. Now log_model records it (with its version), a release
    adds it and its dependencies to the serving wheels, and a load where it is missing names it."""
    import importlib.metadata

    import attrs  # noqa: F401 - as a pytest session (jsonschema, docker) imports it

    from provenflow.deploy import release

    labelled = penguins_frame.dropna(subset=["species"])
    model = slugged_model(project, team_module, labelled)
    with pf.start("train", workspace=ws):
        logged = pf.log_model(model, name="slugged", input_example=labelled[FEATURES].head())
    with ws.ledger.reader() as session:
        signature = resolve_model(session, str(logged)).signature
    slugify_pin = f"python-slugify=={importlib.metadata.version('python-slugify')}"
    assert slugify_pin in signature["requirements"]
    assert not {"sys", "provenflow"} & {r.split("==")[0] for r in signature["requirements"]}
    assert not [r for r in signature["requirements"] if r.startswith(("features_", "helpers_"))]  # carried
    # The pickle holds the string "attrs" (a DataFrame's attribute); the attrs package (imported here by
    # then) is not what it names. Before, every string in the pickle that was a loaded module counted.
    assert "attrs" in sys.modules and not [r for r in signature["requirements"] if r.startswith("attrs==")]

    serving = tmp_path / "wheels"  # what the serving wheels hold: scikit-learn, numpy, pandas, ...
    serving.mkdir()
    for wheel in ("scikit_learn-1-py3-none-any.whl", "numpy-2-py3-none-any.whl", "pandas-3-py3-none-any.whl",
                  "scipy-1-py3-none-any.whl", "joblib-1-py3-none-any.whl", "threadpoolctl-3-py3-none-any.whl"):  # fmt: skip
        (serving / wheel).write_bytes(b"")
    extra = release.model_requirements(signature, serving)
    assert slugify_pin in extra  # and what it depends on, pinned as installed here
    assert f"text-unidecode=={importlib.metadata.version('text-unidecode')}" in extra
    assert not [r for r in extra if r.lower().startswith(("numpy", "scikit-learn", "pandas"))]

    from provenflow.modeling.owncode import check_requirements

    with pytest.raises(ModelCodeError) as caught:
        check_requirements(["no-such-distribution==1.0"], "slugged@1")
    assert str(caught.value).startswith(
        "model slugged@1 needs the distribution no-such-distribution==1.0 (its code imports it), which is not installed"
    )
    with pytest.raises(release.ReleaseError, match=r"needs the distribution no-such-distribution==1.0"):
        release.model_requirements({"requirements": ["no-such-distribution==1.0"]}, serving)


def test_a_composite_model_lists_each_step_s_parameters():
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    from provenflow.modeling.flavors import hyper_parameters

    encode = ColumnTransformer([("station", OneHotEncoder(), ["station"]), ("gone", "drop", ["id"])])
    params = hyper_parameters(make_pipeline(encode, GradientBoostingClassifier(max_depth=3)))
    assert params["gradientboostingclassifier__max_depth"] == 3
    assert params["columntransformer__station__handle_unknown"] == "error"
    assert not {"steps", "columntransformer", "columntransformer__transformers"} & set(params)


def test_the_team_s_runs_that_registered_a_model_are_its_leaderboard(ws, team_module, penguins_frame):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from provenflow.ui.leaderboard import leaderboard_rows, model_runs

    labelled = penguins_frame.dropna(subset=["species"])
    for c in (0.001, 10.0):
        with pf.start("train-species", parameters={"C": c}, workspace=ws):
            model = make_pipeline(team_module.BillRatio(), LogisticRegression(C=c, max_iter=1000))
            model.fit(labelled[FEATURES], labelled["species"])
            pf.log_model(model, name="species", input_example=labelled[FEATURES].head(),
                         eval=(labelled[FEATURES], labelled["species"]))  # fmt: skip
    with ws.ledger.reader() as session:
        primary, rows = leaderboard_rows(model_runs(session, "species"))
    assert primary == "accuracy" and len(rows) == 2  # the model card said "no runs yet"
    assert [r["parameters"] for r in rows] == ["Pipeline C=10", "Pipeline C=0.001"]  # best first
    assert [r["version"] for r in rows] == ["2", "1"]


DATED = """
    import numpy as np
    import pandas as pd
    from sklearn.base import BaseEstimator, TransformerMixin


    class HourOfDay(BaseEstimator, TransformerMixin):
        '''The team's own date parsing: the hour of a day-first timestamp, beside the load.'''

        def fit(self, X, y=None):
            return self

        def transform(self, X):
            when = pd.to_datetime(X["when"], format="%d/%m/%Y %H:%M")
            return np.column_stack([when.dt.hour, X["load"]])
"""


def _serve_team_model(ws, project, tmp_path, source: str, fit, name: str):
    """The team's module (SOURCE) imported from the project, FIT(module) → (model, inputs) logged as
    NAME, and a model server started on its bundle from the checkout: (model, server)."""
    module_name = f"team_{uuid.uuid4().hex[:8]}"
    (project / f"{module_name}.py").write_text(textwrap.dedent(source))
    sys.path.insert(0, str(project))
    try:
        model, inputs = fit(importlib.import_module(module_name))
        with pf.start("train", workspace=ws):
            logged = pf.log_model(model, name=name, input_example=inputs.head())
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(module_name, None)
    bundle = tmp_path / "bundle"
    export_bundle(ws, str(logged), bundle)
    return model, start_server(bundle, str(tmp_path / "log"))


def test_a_value_the_team_s_own_model_refuses_is_the_client_s_error(ws, project, tmp_path):
    """A text timestamp is a categorical input to the server (any string passes its checks); the team's
    transformer then raises ValueError on "not a date". It answered 500, as if the server were broken,
    where the built-in recipe answers 422; the server goes on serving."""
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    def fit(module):
        rng = np.random.default_rng(0)
        when = pd.Timestamp("2026-11-01") + pd.to_timedelta(rng.integers(0, 30 * 24, 300), unit="h")
        frame = pd.DataFrame({"when": when.strftime("%d/%m/%Y %H:%M"), "load": rng.normal(size=300)})
        inputs = frame[["when", "load"]]
        return make_pipeline(module.HourOfDay(), LinearRegression()).fit(inputs, when.hour + frame["load"]), inputs

    _, server = _serve_team_model(ws, project, tmp_path, DATED, fit, "demand")
    try:
        good = {"records": [{"when": "18/11/2026 16:33", "load": 0.5}]}
        bad = {"records": [{"when": "not a date", "load": 0.5}]}
        assert httpx.post(f"{server.url}/predict", json=good, timeout=30).status_code == 200
        refused = httpx.post(f"{server.url}/predict", json=bad, timeout=30)
        assert refused.status_code == 422, refused.text
        assert "not a date" in refused.json()["error"] and "ValueError" in refused.json()["error"]
        # In a batch, the row the model refuses is named (before: the whole batch, no row).
        mixed = {"records": [good["records"][0], good["records"][0], bad["records"][0]]}
        named = httpx.post(f"{server.url}/predict", json=mixed, timeout=30)
        assert named.status_code == 422 and named.json()["error"].startswith("row 2: "), named.text
        answer = httpx.post(f"{server.url}/predict", json=good, timeout=30)
        assert answer.status_code == 200 and answer.json()["predictions"][0] == pytest.approx(16.5)
    finally:
        server.stop()


WEEKDAY = """
    import numpy as np
    from sklearn.base import BaseEstimator, TransformerMixin


    class Weekday(BaseEstimator, TransformerMixin):
        '''The team's own feature: the weekday of a date object (what a Parquet DATE column reads as).'''

        def fit(self, X, y=None):
            return self

        def transform(self, X):
            return np.column_stack([[d.weekday() for d in X["day"]], X["price"]])
"""


def test_a_team_model_trained_on_date_objects_is_given_date_objects(ws, project, tmp_path):
    """Before: the request's strings reached the team's transformer, which had been given
    datetime.date objects in training ('str' object has no attribute 'weekday': the whole batch 422
    without a row), and any date format passed the server's check, month-first and day-first alike."""
    import datetime

    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    def fit(module):
        days = [datetime.date(2026, 11, 1) + datetime.timedelta(days=i % 60) for i in range(240)]
        frame = pd.DataFrame({"day": days, "price": np.linspace(1, 2, 240)})
        sold = [10.0 * (d.weekday() >= 5) + p for d, p in zip(frame["day"], frame["price"], strict=True)]
        return make_pipeline(module.Weekday(), LinearRegression()).fit(frame, sold), frame

    model, server = _serve_team_model(ws, project, tmp_path, WEEKDAY, fit, "sales")
    try:
        rows = [{"day": "2026-12-05", "price": 1.5}, {"day": "2026-12-07T09:00:00Z", "price": 1.5}]
        answer = httpx.post(f"{server.url}/predict", json={"records": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        expected = model.predict(pd.DataFrame({"day": [datetime.date(2026, 12, 5), datetime.date(2026, 12, 7)],
                                               "price": [1.5, 1.5]}))  # fmt: skip
        assert answer.json()["predictions"] == pytest.approx(list(expected))  # a Saturday, a Monday
        mixed = [*rows, {"day": "03/14/2026", "price": 1.5}]
        refused = httpx.post(f"{server.url}/predict", json={"records": mixed}, timeout=30)
        assert refused.status_code == 422, refused.text
        assert "row 2, column 'day': expected an ISO 8601 date string" in refused.text
    finally:
        server.stop()


def test_the_gate_scores_a_team_s_model_on_its_own_held_out_rows_and_knows_the_holder_s(ws, penguins_frame):
    """A team's script splits its data itself and gives log_model eval=(X, y). Before, the gate
    re-split the candidate's dataset with model-run's seed (rows the candidate trained on among them),
    and took every row of the holder's dataset as trained on (1,609 left out where 818 were)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    from provenflow.modeling import registry
    from provenflow.tasks.registry import score_on_holdout

    def train(frame: pd.DataFrame, seed: int) -> tuple[str, pd.DataFrame, pd.DataFrame]:
        with pf.start("ingest", workspace=ws):
            version = pf.log_dataset(frame, name="pen")
        with pf.start("train", workspace=ws):
            rows = pf.dataset(str(version)).dropna(subset=[*FEATURES, "species"])
            fit, held = train_test_split(rows, test_size=0.3, random_state=seed)
            model = LogisticRegression(max_iter=1000).fit(fit[FEATURES], fit["species"])
            logged = pf.log_model(model, name="species", input_example=held[FEATURES].head(),
                                  eval=(held[FEATURES], held["species"]))  # fmt: skip
        return str(logged), fit, held

    first, first_fit, _ = train(penguins_frame, 1)
    with ws.ledger.transaction() as session:
        registry.assign_alias(session, resolve_model(session, first), "production", "ds", "first", {}, None)
    more = penguins_frame.sample(80, random_state=2).assign(bill_length_mm=lambda f: f["bill_length_mm"] + 0.3)
    second, _, second_held = train(pd.concat([penguins_frame, more], ignore_index=True), 7)
    scores = score_on_holdout.fn(ws, second, "production", None)
    # Counted without provenflow: the challenger's held-out rows that the champion fitted on.
    cols = [*FEATURES, "species"]
    overlap = len(second_held[cols].merge(first_fit[cols].drop_duplicates(), on=cols))
    assert 0 < overlap < len(second_held)
    assert (scores.left_out, scores.rows) == (overlap, len(second_held) - overlap)
