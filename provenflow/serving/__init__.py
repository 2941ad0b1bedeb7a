"""Serving a model version over HTTP, with every prediction logged.

    export_bundle(workspace, "penguins-species@3", Path("bundle"))   # the unit an image ships
    serve("penguins-species@3", port=8000)                          # export, load, run uvicorn
    read_predictions(store_url, "penguins-species", 3)              # what the server predicted

The modules the container uses (bundle loading, app, prediction log, ONNX runtime) need only
fastapi, uvicorn, orjson, numpy, pandas, pyarrow, scikit-learn, onnxruntime, blake3 and fsspec;
the ledger (SQLAlchemy) is imported only to export a bundle. Parts load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BundleMetadata",
    "LoadedModel",
    "PredictionLog",
    "create_app",
    "export_bundle",
    "load_bundle",
    "read_predictions",
    "serve",
]

_WHERE = {
    "BundleMetadata": "bundle",
    "LoadedModel": "bundle",
    "export_bundle": "bundle",
    "load_bundle": "bundle",
    "PredictionLog": "predictlog.log",
    "read_predictions": "predictlog.reading",
    "create_app": "app",
    "serve": "run",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"provenflow.serving.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'provenflow.serving' has no attribute {name!r}")
