"""Deploying a model version as a background server process on this machine (no Docker needed).

The development and demo target: the same bundle and server the image runs, started with
``python -m provenflow.serving``; the new process must answer /ready before the old one is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from provenflow.deploy.errors import RolloutFailed


@dataclass(frozen=True)
class LocalDeployment:
    name: str
    pid: int
    endpoint: str
    bundle: str
    replaced_pid: int | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def servers_folder() -> Path:
    """Where each local deployment keeps its bundle, pid and log: .provenflow/deployments/NAME/."""
    from provenflow.settings import get_settings

    return get_settings().home_dir / "deployments"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _alive(pid: int) -> bool:
    try:
        return b"provenflow.serving" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _recorded_pid(folder: Path) -> int | None:
    try:
        return int((folder / "pid").read_text())
    except (OSError, ValueError):
        return None


def stop(folder: Path) -> int | None:
    """Stop the server recorded in ``folder``/pid, if it still runs; its pid, or None."""
    pid_file = folder / "pid"
    pid = _recorded_pid(folder)
    if pid is None:
        return None
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)  # the server flushes its prediction log on SIGTERM
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return pid


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _serves(endpoint: str, model_hash: str) -> bool:
    """The server at ``endpoint`` is ready and serves this very model (not another on the port)."""
    try:
        with urllib.request.urlopen(f"{endpoint}/ready", timeout=1) as response:
            return (
                response.status == 200
                and json.loads(response.read()).get("model", {}).get("hash") == model_hash
            )
    except (OSError, ValueError):
        return False


def deploy(
    bundle: Path,
    folder: Path,
    name: str,
    log_url: str,
    port: int | None,
    timeout: float,
    model_hash: str,
    env: dict[str, str] | None = None,
) -> LocalDeployment:
    folder.mkdir(parents=True, exist_ok=True)
    if port and not _port_free(port):
        previous = _recorded_pid(folder)
        if previous is None or not _alive(previous):
            raise RolloutFailed(
                f"port {port} is in use by another program; pick another --port", reason="PortInUse"
            )
        stop(folder)  # our own previous server holds the fixed port: it has to make way
    port = port or _free_port()
    env = {**os.environ, **(env or {}), "PROVENFLOW_PREDICTION_LOG_URL": log_url}
    with open(folder / "server.log", "ab") as log:
        process = subprocess.Popen(
            # Short flushes: a local deployment is for trying things, where a drift check right after
            # sending traffic should see it.
            [sys.executable, "-m", "provenflow.serving", "--bundle", str(Path(bundle).resolve()), "--host",
             "127.0.0.1", "--port", str(port), "--flush-seconds", "1"],
            # In its own folder, as in an image: nothing of the deployer's working folder is importable,
            # so a model that would miss its code there misses it here too.
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                tail = (folder / "server.log").read_text(errors="replace")[-800:]
                raise RolloutFailed(f"the server for {name} exited before it was ready; the previous one keeps serving:\n{tail}",
                                    reason="ProcessExited")  # fmt: skip
            if process.poll() is None and _serves(endpoint, model_hash):
                break
            if time.monotonic() > deadline:
                raise RolloutFailed(
                    f"{endpoint}/ready did not answer within {timeout:.0f} s", reason="Timeout"
                )
            time.sleep(0.2)
    except BaseException:
        # Until its pid is written below, `provenflow down` cannot find it: a Ctrl-C in this wait (seen
        # in the demo's step 5) left a model server running that nothing would stop.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    replaced = stop(folder)
    (folder / "pid").write_text(str(process.pid))
    return LocalDeployment(name, process.pid, endpoint, str(bundle), replaced)
