"""Running the server: ``serve()`` for ``provenflow serve``, and the container image's entry point.

Container entry (``python -m provenflow.serving --bundle /model --port 8080``) reads three
environment variables, the only configuration an image gets at run time:

    PROVENFLOW_PREDICTION_LOG_URL   where the prediction log goes (fsspec URL; default ./predictions)
    PROVENFLOW_SERVE_TOKEN          bearer token for /predict and /metadata (unset: no auth)
    PROVENFLOW_SIGNING_KEY          optional: check the bundle's seal too, not only its hashes
                                    (the release verified the seal when it exported the bundle)

``--log-fsync`` fsyncs every prediction-log record (for machine crashes; a killed process loses
nothing without it). Write-ahead files of a log in an object store go to the temporary folder:
give the container a volume there (the Kubernetes manifests mount an emptyDir at /tmp).

The image has neither Prefect nor SQLAlchemy, so this module imports the ledger only inside
``serve()``, which exports a bundle from the workspace first.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provenflow.errors import ProvenflowError
from provenflow.serving.app import DEFAULT_MAX_ROWS, create_app
from provenflow.serving.bundle import LoadedModel, export_bundle, load_bundle
from provenflow.serving.predictlog import PredictionLog
from provenflow.signing import SigningKey, parse_key

if TYPE_CHECKING:
    import fsspec

    from provenflow.workspace import Workspace

LOG_URL_ENV = "PROVENFLOW_PREDICTION_LOG_URL"
TOKEN_ENV = "PROVENFLOW_SERVE_TOKEN"
KEY_ENV = "PROVENFLOW_SIGNING_KEY"
DEFAULT_LOG_URL = "predictions"


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    use_onnx: bool = True
    max_rows: int = DEFAULT_MAX_ROWS
    flush_rows: int = 10_000
    flush_seconds: float = 10.0
    log_fsync: bool = False


def serve(
    ref: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    workspace: Workspace | None = None,
    onnx: bool = True,
) -> None:
    """Serve model version ``ref`` until interrupted; predictions are logged in the workspace's store."""
    from provenflow.signing import signing_key
    from provenflow.workspace import Workspace

    workspace = workspace or Workspace.default()
    key = signing_key()  # checked again on load: the bundle sits in a temporary folder meanwhile
    with tempfile.TemporaryDirectory(prefix="provenflow-bundle-") as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(workspace, ref, bundle, onnx=onnx)
        options = ServerOptions(host=host, port=port, token=token, use_onnx=onnx)
        serve_bundle(bundle, options, workspace.store.root, fs=workspace.store.fs, key=key)


def serve_bundle(
    bundle: Path,
    options: ServerOptions,
    log_url: str | None,
    fs: fsspec.AbstractFileSystem | None = None,
    key: SigningKey | None = None,
) -> None:
    """Verify and load ``bundle``, then run uvicorn until SIGINT/SIGTERM; the log is flushed on the way out."""
    import uvicorn

    model = load_bundle(bundle, use_onnx=options.use_onnx, key=key)
    log = open_log(model, log_url, options, fs) if log_url else None
    app = create_app(model, log, options.token, max_rows=options.max_rows)
    # No access log: every prediction is in the prediction log already, and it costs ~10% throughput.
    config = uvicorn.Config(app, host=options.host, port=options.port, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    print(
        f"serving {model.metadata.ref} ({model.metadata.hash[:12]}) with {model.runtime} on "
        f"http://{options.host}:{options.port}"
        + (f"; scikit-learn because {model.runtime_reason}" if model.runtime_reason else ""),
        file=sys.stderr,
        flush=True,
    )
    server.run()


def open_log(
    model: LoadedModel, url: str, options: ServerOptions, fs: fsspec.AbstractFileSystem | None = None
) -> PredictionLog:
    meta = model.metadata
    return PredictionLog(
        url, meta.name, meta.version, meta.hash, model.features, meta.classes,
        flush_rows=options.flush_rows, flush_seconds=options.flush_seconds, fs=fs, fsync=options.log_fsync,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """``python -m provenflow.serving --bundle DIR [--host H] [--port N]``: the container's command."""
    parser = argparse.ArgumentParser(prog="python -m provenflow.serving", description=main.__doc__)
    parser.add_argument("--bundle", required=True, type=Path, help="folder written by export_bundle")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--no-onnx", action="store_true", help="serve with scikit-learn even if ONNX is there"
    )
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS, help="largest batch accepted")
    parser.add_argument("--flush-rows", type=int, default=10_000, help="prediction log segment size (rows)")
    parser.add_argument(
        "--flush-seconds", type=float, default=10.0, help="longest wait before a segment is written"
    )
    parser.add_argument(
        "--log-fsync", action="store_true",
        help="fsync each prediction-log record (survives a machine crash; a process crash loses nothing without it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    options = ServerOptions(
        host=args.host, port=args.port, token=os.environ.get(TOKEN_ENV) or None, use_onnx=not args.no_onnx,
        max_rows=args.max_rows, flush_rows=args.flush_rows, flush_seconds=args.flush_seconds,
        log_fsync=args.log_fsync,
    )  # fmt: skip
    try:
        key = parse_key(os.environ[KEY_ENV], KEY_ENV) if os.environ.get(KEY_ENV) else None
        serve_bundle(args.bundle, options, os.environ.get(LOG_URL_ENV) or DEFAULT_LOG_URL, key=key)
    except ProvenflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0
