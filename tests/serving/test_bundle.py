"""Exporting and loading bundles: provenance in metadata.json, ONNX where it converts, tamper refusal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, RefError, StoreError
from provenflow.modeling import training
from provenflow.serving.bundle import export_bundle, load_bundle
from provenflow.serving.inputs import parse_request
from provenflow.serving.onnx import PROBA_TOLERANCE
from tests.serving.conftest import records_of, start_server


def test_metadata_records_model_and_provenance(recorded, bundles):
    meta = json.loads((bundles["forest"] / "metadata.json").read_text())
    with recorded.workspace.ledger.reader() as session:
        from provenflow.ledger.refs import resolve_model

        version = resolve_model(session, "penguins-forest@1")
        run_id, model_hash = version.run_id, version.hash
    assert meta["name"] == "penguins-forest" and meta["version"] == 1
    assert meta["hash"] == model_hash == Digest.of_file(bundles["forest"] / "model.pkl").hex
    assert meta["training_run"] == run_id
    assert meta["datasets"] == [recorded.dataset_ref]
    assert meta["code_commit"] and len(meta["code_commit"]) == 40
    assert meta["task"] == "classification" and meta["classes"] == ["Adelie", "Chinstrap", "Gentoo"]
    assert [i["name"] for i in meta["signature"]["inputs"]][:2] == ["island", "bill_length_mm"]


@pytest.mark.parametrize("short", ["forest", "logistic", "forest-regressor"])
def test_onnx_converts_checks_and_serves(bundles, short):
    meta = json.loads((bundles[short] / "metadata.json").read_text())
    assert meta["onnx"] is not None, meta["onnx_reason"]
    assert meta["onnx"]["hash"] == Digest.of_file(bundles[short] / "model.onnx").hex
    assert meta["onnx"]["checked_rows"] >= 200
    if meta["task"] == "classification":
        assert meta["onnx"]["max_proba_diff"] <= PROBA_TOLERANCE
    assert load_bundle(bundles[short]).runtime == "onnx"


def test_onnx_agrees_with_sklearn_on_every_row(recorded, bundles):
    import orjson

    for short in ("forest", "logistic"):
        model = load_bundle(bundles[short])
        names = [f.name for f in model.features]
        body = orjson.dumps({"records": records_of(recorded.frame, names)})
        batch = parse_request(body, model.features, max_rows=10_000)
        onnx, sklearn = model.predict(batch), model.pipeline
        frame = training.features_of(recorded.frame, "species")
        assert onnx.labels.tolist() == sklearn.predict(frame).tolist()
        assert np.abs(onnx.probabilities - sklearn.predict_proba(frame)).max() <= PROBA_TOLERANCE


def test_model_without_converter_falls_back_to_sklearn(bundles):
    meta = json.loads((bundles["centroid"] / "metadata.json").read_text())
    assert meta["onnx"] is None and not (bundles["centroid"] / "model.onnx").exists()
    assert "NearestCentroid" in meta["onnx_reason"]
    model = load_bundle(bundles["centroid"])
    assert model.runtime == "sklearn" and "NearestCentroid" in model.runtime_reason


def test_export_without_onnx(recorded, tmp_path):
    meta = export_bundle(recorded.workspace, "penguins-forest@latest", tmp_path / "b", onnx=False)
    assert meta.onnx is None and meta.onnx_reason == "ONNX conversion turned off"
    assert load_bundle(tmp_path / "b").runtime == "sklearn"


def test_export_refuses_unknown_model_and_non_empty_folder(recorded, tmp_path):
    with pytest.raises(RefError, match="penguins-forest"):
        export_bundle(recorded.workspace, "penguins-forrest@1", tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(StoreError, match="not empty"):
        export_bundle(recorded.workspace, "penguins-forest@1", tmp_path / "b")


@pytest.mark.parametrize("name", ["model.pkl", "model.onnx"])
def test_tampered_bundle_is_refused_and_the_server_does_not_start(bundles, tmp_path, name):
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["forest"], bundle)
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bundle / name).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
        load_bundle(bundle)
    server = start_server(bundle, str(tmp_path / "log"), wait=False)
    assert server.process.wait(timeout=60) == 1
    err = server.stop()
    assert "Error:" in err and name in err and "altered" in err


def test_missing_metadata_is_not_a_bundle(tmp_path):
    with pytest.raises(StoreError, match=r"not a model bundle.*metadata\.json"):
        load_bundle(tmp_path)


def test_a_release_image_of_an_onnx_bundle_holds_no_pickle(bundles, tmp_path):
    """Issue 9: when ONNX was accepted, the image has no pickle to load, and says so if asked for one."""
    from provenflow.deploy import release

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    context = release.build_context(bundles["forest"], wheels, "base", tmp_path / "context")
    assert sorted(p.name for p in (context / "model").iterdir()) == ["metadata.json", "model.onnx"]
    assert load_bundle(context / "model").runtime == "onnx"
    with pytest.raises(StoreError, match="carries only the ONNX graph"):
        load_bundle(context / "model", use_onnx=False)
    centroid = release.build_context(bundles["centroid"], wheels, "base", tmp_path / "c2")
    assert (centroid / "model" / "model.pkl").exists()  # no ONNX graph: the pickle serves
