"""A model bundle: the folder both ``provenflow serve`` and the container image serve from.

    metadata.json   what the model is and where it came from (``BundleMetadata``), with the hashes
                    and the model version's seal (provenflow.modeling.signing)
    model.pkl       the canonical pickle from the store, byte for byte (its BLAKE3 is the model's identity)
    model.onnx      optional: the checked ONNX graph of the same pipeline

``load_bundle`` checks every file against the hashes in metadata.json before using it, and the
seal against the signing key when it is given one; it unpickles nothing that does not match: a
server with a tampered bundle refuses to start. When a checked ONNX graph is there, the server
reads what it needs of the pipeline from metadata.json and unpickles nothing at all (the
pickle is loaded, seal checked, only when asked for: ``--no-onnx``, or ``LoadedModel.pipeline``).

Only ``export_bundle`` needs the ledger; it imports it lazily, so loading and serving a bundle
needs neither SQLAlchemy nor Prefect (the container image has neither).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provenflow.digest import Digest
from provenflow.errors import IntegrityError, SignatureError, StoreError
from provenflow.modeling import signing
from provenflow.modeling.signing import Key, ModelIdentity
from provenflow.serving.inputs import Batch, Feature
from provenflow.serving.runtime import (
    Predictions,
    Predictor,
    SklearnPredictor,
    category_types,
    category_types_of,
    classes_of,
    features_of_signature,
    pipeline_facts,
)

if TYPE_CHECKING:
    import pandas as pd

    from provenflow.workspace import Workspace

log = logging.getLogger(__name__)

BUNDLE_FORMAT = 2  # 2: the model version's seal, and the pipeline facts the ONNX path needs
METADATA_FILE, MODEL_FILE, ONNX_FILE = "metadata.json", "model.pkl", "model.onnx"
CHECK_ROWS = 200


@dataclass(frozen=True)
class BundleMetadata:
    name: str
    version: int
    hash: str  # BLAKE3 of model.pkl, as recorded on the model version
    format: str
    task: str | None
    classes: list[Any] | None
    signature: dict
    estimator: str | None
    training_run: str | None
    datasets: list[str]  # refs (NAME@VERSION) of the training run's input datasets
    code_commit: str | None
    code_dirty: bool | None
    onnx: dict | None  # {"hash", "checked_rows", "max_proba_diff", ...} when a checked graph is included
    onnx_reason: str | None  # why there is no ONNX graph
    exported_at: str
    seal: str | None  # the model version's seal from the ledger (provenflow.modeling.signing)
    bundle_format: int = BUNDLE_FORMAT

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> BundleMetadata:
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{where} is not valid JSON ({exc}); re-export the bundle") from None
        if not isinstance(raw, dict):
            raise StoreError(
                f"{where} holds {type(raw).__name__}, expected a JSON object; re-export the bundle"
            )
        if raw.get("bundle_format") != BUNDLE_FORMAT:
            raise StoreError(
                f"{where} has bundle_format {raw.get('bundle_format')!r}; this provenflow reads format "
                f"{BUNDLE_FORMAT}. Re-export the bundle with this version of provenflow."
            )
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in raw and n != "bundle_format")
        if missing:
            raise StoreError(f"{where} lacks {', '.join(missing)}; re-export the bundle")
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class LoadedModel:
    """A verified bundle, ready to predict, with the runtime that serves it."""

    metadata: BundleMetadata
    features: tuple[Feature, ...]
    predictor: Predictor
    runtime_reason: str | None  # why scikit-learn serves, when it does
    folder: Path
    key: Key | None
    _pipeline: Any = None

    @functools.cached_property
    def ignored(self) -> frozenset[str]:
        """Columns of the training table the model does not take (identifiers, leaky or constant
        columns, the target): a client sending whole rows of that table has them ignored."""
        signature = self.metadata.signature or {}
        target = (signature.get("target") or {}).get("name")
        return frozenset([*(signature.get("left_out") or {}), *([target] if target else [])])

    @property
    def pipeline(self) -> Any:
        """The scikit-learn pipeline, unpickled (seal and hash checked) on first use only."""
        if self._pipeline is None:
            self._pipeline = _unpickle(self.folder, self.metadata, self.key)
        return self._pipeline

    @property
    def runtime(self) -> str:
        return self.predictor.runtime

    @property
    def classes(self) -> list[Any] | None:
        return self.metadata.classes

    def predict(self, batch: Batch) -> Predictions:
        return self.predictor.predict(batch)

    def describe(self) -> dict[str, Any]:
        """What /metadata shows."""
        meta = self.metadata
        return {
            "model": {"name": meta.name, "version": meta.version, "hash": meta.hash, "format": meta.format},
            "task": meta.task,
            "classes": meta.classes,
            "estimator": meta.estimator,
            "signature": meta.signature,
            "training_run": meta.training_run,
            "datasets": meta.datasets,
            "code": {"commit": meta.code_commit, "dirty": meta.code_dirty},
            "runtime": self.runtime,
            "runtime_reason": self.runtime_reason,
            "onnx": meta.onnx,
            "exported_at": meta.exported_at,
        }


# -- loading (no ledger, no Prefect) ---------------------------------------------------


def load_bundle(
    folder: str | os.PathLike, use_onnx: bool = True, key: Key | None = None
) -> LoadedModel:
    """Verify and load a bundle; IntegrityError when a file does not match its recorded hash, and
    SignatureError when ``key`` is given and the seal does not verify (checked before anything
    else, ONNX or not). ``key=None`` checks the hashes only: for a release image, whose bundle was
    verified when it was exported (see SECURITY.md)."""
    folder = Path(folder)
    meta = read_metadata(folder)
    if key is not None:
        signing.verify(ModelIdentity.of(meta), meta.seal, key)
    onnx_bytes = _verified_onnx(folder, meta)
    reason = meta.onnx_reason
    if onnx_bytes is not None and use_onnx:
        _check_pickle(folder, meta)  # not needed to serve, but a bundle is refused whole when altered
        facts = meta.onnx["pipeline"]
        features = features_of_signature(meta.signature, category_types_of(facts))
        try:
            from provenflow.serving.onnx import OnnxPredictor

            predictor = OnnxPredictor(onnx_bytes, features, facts["fills"], facts["probabilities"])
            return LoadedModel(meta, features, predictor, None, folder, key)
        except Exception as exc:  # e.g. an onnxruntime too old for the graph: scikit-learn still serves
            reason = f"onnxruntime could not load {folder / ONNX_FILE} ({type(exc).__name__}: {exc})"
            log.warning("serving %s with scikit-learn: %s", meta.ref, reason)
    elif onnx_bytes is not None:
        reason = "ONNX turned off for this server"
    pipeline = _unpickle(folder, meta, key)
    features = features_of_signature(meta.signature, category_types(pipeline))
    return LoadedModel(meta, features, SklearnPredictor(pipeline, features), reason, folder, key, pipeline)


def _check_pickle(folder: Path, meta: BundleMetadata) -> None:
    path = folder / MODEL_FILE
    if path.exists() and (actual := Digest.of_file(path)).hex != meta.hash:
        raise IntegrityError(
            f"{path}: model bytes hash to {actual.hex}, not the recorded {meta.hash}. "
            "The bundle was altered; export it again from the store."
        )


def _unpickle(folder: Path, meta: BundleMetadata, key: Key | None) -> Any:
    from provenflow.modeling.training import deserialize

    model_path = folder / MODEL_FILE
    if meta.onnx is not None and not model_path.exists():
        raise StoreError(
            f"the bundle at {folder} carries only the ONNX graph of {meta.ref} (a release image leaves the "
            "pickle out when ONNX was accepted), and the pickle was asked for; serve it with ONNX, or "
            "release the model again with ONNX off"
        )
    from provenflow.modeling.owncode import check_requirements

    for note in check_requirements((meta.signature or {}).get("requirements") or [], meta.ref):
        log.warning("loading %s: %s", meta.ref, note)
    try:
        return deserialize(_read(model_path), ModelIdentity.of(meta), meta.seal, key)
    except SignatureError:
        raise
    except IntegrityError as exc:
        raise IntegrityError(
            f"{model_path}: {exc}. The bundle was altered; export it again from the store."
        ) from None


def read_metadata(folder: Path) -> BundleMetadata:
    path = folder / METADATA_FILE
    if not folder.is_dir():
        raise StoreError(
            f"no model bundle at {folder}: not a folder; expected a folder written by export_bundle"
        )
    if not path.is_file():
        raise StoreError(
            f"{folder} is not a model bundle: it has no {METADATA_FILE}; export the bundle again"
        )
    return BundleMetadata.from_json(path.read_bytes(), str(path))


def _verified_onnx(folder: Path, meta: BundleMetadata) -> bytes | None:
    path = folder / ONNX_FILE
    if meta.onnx is None:
        if path.exists():
            raise IntegrityError(
                f"{path} is not recorded in {METADATA_FILE}; refusing a bundle with unknown files"
            )
        return None
    if not path.is_file():
        raise IntegrityError(
            f"{METADATA_FILE} records an ONNX model but {path} is missing; export the bundle again"
        )
    data = path.read_bytes()
    actual = Digest.of_bytes(data)
    if actual.hex != meta.onnx.get("hash"):
        raise IntegrityError(
            f"{path} hashes to {actual.hex}, not the recorded {meta.onnx.get('hash')}; "
            "the bundle was altered. Refusing to load it; export it again from the store."
        )
    return data


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StoreError(f"the model bundle lacks {path}; export the bundle again") from None


# -- exporting (needs the ledger and the store) ----------------------------------------


def export_bundle(
    workspace: Workspace, ref: str, dest: str | os.PathLike, onnx: bool = True
) -> BundleMetadata:
    """Write the bundle of model version ``ref`` (NAME@VERSION, NAME@latest or an alias) into ``dest``
    (a new or empty folder). With ``onnx``, include an ONNX graph when it converts and agrees."""
    from provenflow.modeling import training
    from provenflow.serving.onnx import Conversion, convert_pipeline

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise StoreError(
            f"cannot export a bundle into {dest}: the folder is not empty; give a new or empty folder"
        )
    facts = _ledger_facts(workspace, ref)
    digest = Digest(facts["hash"])
    model = ModelIdentity(facts["name"], facts["version"], facts["hash"], facts["format"])
    key = signing.signing_key()
    signing.verify(model, facts["seal"], key)  # before the bytes are even read
    data = workspace.store.read_bytes(digest)  # verified against the recorded hash
    pipeline = training.deserialize(data, model, facts["seal"], key)
    signature = facts["signature"] or {}
    if not signature.get("inputs"):
        raise StoreError(
            f"model version {facts['name']}@{facts['version']} has no recorded input signature to serve"
        )
    conversion = Conversion(None, None, "ONNX conversion turned off")
    if onnx:
        features = features_of_signature(signature, category_types(pipeline))
        rows = _check_rows(workspace, facts["dataset_hashes"], signature, features)
        conversion = convert_pipeline(pipeline, features, rows)
    onnx_meta = None
    if conversion.check is not None:  # with what the ONNX path needs of the pipeline: no pickle to serve
        onnx_meta = {**conversion.check.as_dict(), "pipeline": pipeline_facts(pipeline)}
    meta = BundleMetadata(
        name=facts["name"],
        version=facts["version"],
        hash=digest.hex,
        format=facts["format"],
        task=facts["task"],
        classes=signature.get("classes", classes_of(pipeline)),
        signature=signature,
        estimator=facts["estimator"],
        training_run=facts["run_id"],
        datasets=facts["datasets"],
        code_commit=facts["code_commit"],
        code_dirty=facts["code_dirty"],
        onnx=onnx_meta,
        onnx_reason=conversion.reason,
        exported_at=datetime.now(UTC).isoformat(),
        seal=facts["seal"],
    )
    dest.mkdir(parents=True, exist_ok=True)
    (dest / MODEL_FILE).write_bytes(data)
    if conversion.model is not None:
        (dest / ONNX_FILE).write_bytes(conversion.model)
    # metadata.json last: a folder without it is not a bundle, so an interrupted export is never served.
    tmp = dest / f".{METADATA_FILE}.tmp"
    tmp.write_bytes(meta.to_json())
    tmp.replace(dest / METADATA_FILE)
    return meta


def _ledger_facts(workspace: Workspace, ref: str) -> dict[str, Any]:
    """What the ledger knows about the model version and its training run, as plain values."""
    from provenflow.ledger import models as m
    from provenflow.ledger.refs import resolve_model

    with workspace.ledger.reader() as session:
        version = resolve_model(session, ref)
        run = session.get(m.Run, version.run_id) if version.run_id else None
        inputs = [io for io in run.io if io.direction == "input" and io.kind == "dataset"] if run else []
        return {
            "name": version.name,
            "version": version.version,
            "hash": version.hash,
            "format": version.format,
            "task": version.task,
            "estimator": version.estimator,
            "signature": version.signature,
            "seal": version.seal,
            "run_id": run.id if run else None,
            "code_commit": run.code_commit if run else None,
            "code_dirty": run.code_dirty if run else None,
            "datasets": [io.name for io in inputs],
            "dataset_hashes": [io.hash for io in inputs],
        }


def _check_rows(
    workspace: Workspace, dataset_hashes: list[str], signature: dict, features: tuple[Feature, ...]
) -> pd.DataFrame:
    """Rows of the training data to check the ONNX graph on (empty when none can be read)."""
    import pandas as pd

    from provenflow.data import datasets
    from provenflow.errors import ProvenflowError
    from provenflow.modeling import training
    from provenflow.serving.onnx import check_rows

    target = (signature.get("target") or {}).get("name")
    names = {f.name for f in features}
    for digest in dataset_hashes:
        try:
            frame = datasets.load_table(workspace.store, Digest(digest))
            if not names <= set(map(str, frame.columns)):
                continue
            prepared = training.features_of(frame, target) if target in frame.columns else frame[list(names)]
        except ProvenflowError as exc:
            log.warning("cannot read dataset %s to check the ONNX graph: %s", digest[:12], exc)
            continue
        return check_rows(prepared, features, CHECK_ROWS)
    return pd.DataFrame(columns=[f.name for f in features])
