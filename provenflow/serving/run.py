"""Running the server: ``serve()`` for ``provenflow serve``, and the container image's entry point.

Container entry (``python -m provenflow.serving --bundle /model --port 8080``) reads these
environment variables, the only configuration an image gets at run time:

    PROVENFLOW_PREDICTION_LOG_URL   where the prediction log goes (fsspec URL; default ./predictions)
    PROVENFLOW_SERVE_TOKEN          bearer token for /predict, /metadata and /v2/models/... (unset: no auth)
    PROVENFLOW_METRICS_TOKEN        bearer token for /metrics (unset: open, as Prometheus scrapes expect)
    PROVENFLOW_SHADOW_URL           optional: http://host:port of a shadow challenger's server; every
                                    answered request is mirrored there, never awaited (mirror.py);
                                    PROVENFLOW_SHADOW_QUEUE and _TIMEOUT tune it (1000 copies, 5 s)
    PROVENFLOW_SIGNING_KEY          optional: check the bundle's seal too, not only its hashes
                                    (the release verified the seal when it exported the bundle)

``--workers N`` serves from N processes on one listening socket (the kernel hands each connection
to one of them); each loads the model itself and keeps its own prediction log, i.e. its own
write-ahead files (they carry a per-process id, so the processes never write the same file). A
worker that dies (OOM kill, segfault) is replaced, and the new one recovers the dead one's
write-ahead file; a worker that exits with an error (a bundle that does not verify) stops the server.
Each worker also keeps its own /metrics counts and a scrape reaches one worker: for complete
Prometheus series run one process per container (prometheus-client's multiprocess mode would need
a shared folder and its own collectors; not done).

``--log-fsync`` fsyncs every prediction-log record (for machine crashes; a killed process loses
nothing without it). Write-ahead files of a log in an object store go to the temporary folder:
give the container a volume there (the Kubernetes manifests mount an emptyDir at /tmp).

The image has neither Prefect nor SQLAlchemy, so this module imports the ledger only inside
``serve()``, which exports a bundle from the workspace first.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provenflow.errors import ProvenflowError
from provenflow.modeling.signing import Key, parse_key
from provenflow.serving.app import DEFAULT_LARGE_BODIES, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS, create_app
from provenflow.serving.bundle import LoadedModel, export_bundle, load_bundle
from provenflow.serving.mirror import URL_ENV as SHADOW_URL_ENV
from provenflow.serving.mirror import Mirror
from provenflow.serving.predictlog.log import PredictionLog

if TYPE_CHECKING:
    import fsspec

    from provenflow.workspace import Workspace

LOG_URL_ENV = "PROVENFLOW_PREDICTION_LOG_URL"
TOKEN_ENV = "PROVENFLOW_SERVE_TOKEN"
METRICS_TOKEN_ENV = "PROVENFLOW_METRICS_TOKEN"
KEY_ENV = "PROVENFLOW_SIGNING_KEY"
DEFAULT_LOG_URL = "predictions"


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    use_onnx: bool = True
    max_rows: int = DEFAULT_MAX_ROWS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    large_bodies: int = DEFAULT_LARGE_BODIES
    flush_rows: int = 100_000
    flush_seconds: float = 10.0
    log_fsync: bool = False
    workers: int = 1
    metrics_token: str | None = None
    shadow_url: str | None = None


def serve(
    ref: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    workspace: Workspace | None = None,
    onnx: bool = True,
    workers: int = 1,
) -> int:
    """Serve model version ``ref`` until interrupted; predictions are logged in the workspace's store.
    Returns the exit status (non-zero when a worker stopped the server with an error it printed)."""
    from provenflow.modeling.signing import signing_key
    from provenflow.workspace import Workspace

    workspace = workspace or Workspace.default()
    key = signing_key()  # checked again on load: the bundle sits in a temporary folder meanwhile
    with tempfile.TemporaryDirectory(prefix="provenflow-bundle-") as tmp:
        bundle = Path(tmp) / "bundle"
        export_bundle(workspace, ref, bundle, onnx=onnx)
        options = ServerOptions(
            host=host, port=port, token=token, use_onnx=onnx, workers=workers,
            metrics_token=os.environ.get(METRICS_TOKEN_ENV) or None, shadow_url=os.environ.get(SHADOW_URL_ENV) or None,
        )  # fmt: skip
        return serve_bundle(bundle, options, workspace.store.root, fs=workspace.store.fs, key=key)


def serve_bundle(
    bundle: Path,
    options: ServerOptions,
    log_url: str | None,
    fs: fsspec.AbstractFileSystem | None = None,
    key: Key | None = None,
) -> int:
    """Verify and load ``bundle``, then run uvicorn until SIGINT/SIGTERM; the log is flushed on the way
    out. With ``options.workers`` > 1, that many processes share one socket (see the module's doc)."""
    if options.workers > 1:
        return _serve_workers(bundle, options, log_url, fs, key)
    _serve_one(bundle, options, log_url, fs, key)
    return 0


def _serve_one(
    bundle: Path,
    options: ServerOptions,
    log_url: str | None,
    fs: fsspec.AbstractFileSystem | None,
    key: Key | None,
    sock: socket.socket | None = None,
    loaded: int | None = None,
) -> None:
    """One server process; with ``sock``, a worker on the supervisor's socket, which writes a byte
    to the pipe ``loaded`` once its model is verified and loaded."""
    import uvicorn

    model = load_bundle(bundle, use_onnx=options.use_onnx, key=key)
    # One compute thread per server process, like the ONNX runtime; more come from --workers.
    # OpenMP's spinning threads (HistGradientBoosting, BLAS) took 60-770 ms per one-row request on
    # 2 busy cores, against 15-35 ms with one thread.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    log = open_log(model, log_url, options, fs) if log_url else None
    mirror = Mirror.from_env(options.shadow_url) if options.shadow_url else None
    app = create_app(
        model,
        log,
        options.token,
        max_rows=options.max_rows,
        max_body_bytes=options.max_body_bytes,
        large_bodies=options.large_bodies,
        metrics_token=options.metrics_token,
        mirror=mirror,
    )
    if loaded is not None:
        os.write(loaded, b".")
        os.close(loaded)
    # No access log: every prediction is in the prediction log already, and it costs ~10% throughput.
    # loop/http stay "auto" (uvloop + httptools when installed): against asyncio + h11 they measured
    # the same here (wrk, one-row requests: 2,430-2,520 vs 2,380-2,620 req/s); the time is in the app.
    config = uvicorn.Config(app, host=options.host, port=options.port, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    worker = f" (worker pid {os.getpid()})" if sock is not None else ""
    print(
        f"serving {model.metadata.ref} ({model.metadata.hash[:12]}) with {model.runtime} on "
        f"http://{options.host}:{options.port}{worker}"
        + (f"; mirroring to the shadow {options.shadow_url}" if options.shadow_url else "")
        + (f"; scikit-learn because {model.runtime_reason}" if model.runtime_reason else ""),
        file=sys.stderr,
        flush=True,
    )
    server.run(sockets=[sock] if sock is not None else None)


def _serve_workers(
    bundle: Path,
    options: ServerOptions,
    log_url: str | None,
    fs: fsspec.AbstractFileSystem | None,
    key: Key | None,
) -> int:
    """Fork ``options.workers`` processes on one listening socket and supervise them. Each worker
    loads the model itself (nothing of onnxruntime crosses a fork); SIGINT/SIGTERM are passed on."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as exc:
        sock.close()
        raise ProvenflowError(
            f"cannot listen on {options.host}:{options.port} ({exc.strerror}); choose another --port"
        ) from exc
    sock.listen(2048)
    children: dict[int, int] = {}  # pid -> worker number
    stopping = False
    status = 0

    def spawn(number: int, loaded: int | None = None) -> int:
        pid = os.fork()
        if pid == 0:  # the worker: serve until told to stop, never return into the supervisor's code
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                _serve_one(bundle, options, log_url, fs, key, sock, loaded)
            except ProvenflowError as exc:
                print(f"Error: {exc}", file=sys.stderr, flush=True)
                code = 1
            except BaseException:  # a worker reports and exits; the supervisor replaces it
                import traceback

                traceback.print_exc()
                code = 2
            finally:
                os._exit(code)
        children[pid] = number
        return pid

    def stop_all(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    previous = {s: signal.signal(s, stop_all) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        # The first worker alone until its model is loaded: a bundle that does not verify is then
        # reported once (its Error: line) and the server exits 1, instead of N workers failing alike.
        read_end, write_end = os.pipe()
        first = spawn(0, write_end)
        os.close(write_end)
        loaded = os.read(read_end, 1)  # b"" once the worker exited without loading
        os.close(read_end)
        if not loaded:
            children.pop(first, None)
            code = os.waitstatus_to_exitcode(os.waitpid(first, 0)[1])
            return 0 if stopping else 1 if code <= 0 else code
        for number in range(1, options.workers):
            spawn(number)
        print(
            f"{options.workers} workers on http://{options.host}:{options.port}", file=sys.stderr, flush=True
        )
        while children:
            try:
                pid, wait_status = os.wait()
            except ChildProcessError:
                break
            number = children.pop(pid, None)
            if number is None or stopping:
                continue
            code = os.waitstatus_to_exitcode(wait_status)
            if code == 1:  # it printed an Error: line; the others would fail the same way
                status = 1
                stop_all()
                continue
            print(
                f"worker {number} (pid {pid}) exited with {code}; starting another",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0)  # a worker that dies at once must not make the supervisor spin
            spawn(number)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return status


def open_log(
    model: LoadedModel, url: str, options: ServerOptions, fs: fsspec.AbstractFileSystem | None = None
) -> PredictionLog:
    meta = model.metadata
    return PredictionLog(
        url, meta.name, meta.version, meta.hash, model.features, meta.classes,
        flush_rows=options.flush_rows, flush_seconds=options.flush_seconds, fs=fs, fsync=options.log_fsync,
        segment_process=True,  # off the event loop's GIL: predictlog/builder.py
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
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
        help="largest request body accepted (bytes); memory per request is bounded by a multiple of it",
    )  # fmt: skip
    parser.add_argument(
        "--large-bodies", type=int, default=DEFAULT_LARGE_BODIES,
        help="bodies over 1 MB read and parsed at once; the others wait (memory: about 3x the body limit each)",
    )  # fmt: skip
    # 100,000: the server keeps no rows in memory for a segment (they are in the write-ahead file), and
    # 10,000-row requests at 10,000 rows per segment cost an fsync (8-16 ms here) and a build per request.
    parser.add_argument("--flush-rows", type=int, default=100_000, help="prediction log segment size (rows)")
    parser.add_argument(
        "--flush-seconds", type=float, default=10.0, help="longest wait before a segment is written"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (each with its own log files)"
    )
    parser.add_argument(
        "--log-fsync", action="store_true",
        help="fsync each prediction-log record (survives a machine crash; a process crash loses nothing without it)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    options = ServerOptions(
        host=args.host, port=args.port, token=os.environ.get(TOKEN_ENV) or None, use_onnx=not args.no_onnx,
        max_rows=args.max_rows, max_body_bytes=args.max_body_bytes, large_bodies=args.large_bodies, flush_rows=args.flush_rows, flush_seconds=args.flush_seconds,
        log_fsync=args.log_fsync, workers=args.workers, metrics_token=os.environ.get(METRICS_TOKEN_ENV) or None,
        shadow_url=os.environ.get(SHADOW_URL_ENV) or None,
    )  # fmt: skip
    if args.workers < 1:
        print(f"Error: --workers must be at least 1, not {args.workers}", file=sys.stderr)
        return 1
    try:
        key = parse_key(os.environ[KEY_ENV], KEY_ENV) if os.environ.get(KEY_ENV) else None
        return serve_bundle(args.bundle, options, os.environ.get(LOG_URL_ENV) or DEFAULT_LOG_URL, key=key)
    except ProvenflowError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
