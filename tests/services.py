"""Real services for the tests: a PostgreSQL cluster and a Prefect API server, each on 127.0.0.1.

A service that cannot start skips the tests that need it, with the reason, except under
CI=true, where it fails them: in CI every service must be there.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from glob import glob
from pathlib import Path

import pytest


def unavailable(reason: str):
    """Skip, or fail under CI=true, because a service is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Postgres:
    port: int
    data_dir: Path
    process_user: str | None

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres", "postgresql"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        _as_user(
            self.process_user,
            [_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"],
            check=False,
        )


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if not found:
        raise FileNotFoundError(name)
    return found


def _as_user(user: str | None, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=120)


def start_postgres(base: Path) -> Postgres:
    """initdb + pg_ctl start in a temporary folder; as root, the cluster runs as user postgres."""
    try:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    except FileNotFoundError as exc:
        unavailable(f"PostgreSQL binaries not found ({exc}); install Debian's postgresql package")
    user = "postgres" if os.geteuid() == 0 else None
    data = base / "pgdata"
    data.mkdir(parents=True, mode=0o700)
    sockets = base / "pgsock"
    sockets.mkdir()
    if user:
        shutil.chown(base, user)
        shutil.chown(data, user)
        shutil.chown(sockets, user)
    port = free_port()
    try:
        _as_user(user, [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        _as_user(
            user,
            [pg_ctl, "-D", str(data), "-w", "-t", "60", "-l", str(base / "postgres.log"),
             "-o", f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c full_page_writes=off", "start"],
        )  # fmt: skip
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        unavailable(f"PostgreSQL did not start: {exc} {detail.strip()[-500:]}")
    return Postgres(port=port, data_dir=data, process_user=user)


@dataclass
class PrefectServer:
    api_url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_prefect_server(home: Path, database_url: str | None) -> PrefectServer:
    """`prefect server start` on a free port with its own PREFECT_HOME (Postgres-backed when given)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_UI_ENABLED="false",
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            unavailable(f"the Prefect server exited with {process.returncode}: {log.read_text()[-800:]}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=1) as response:
                if response.status == 200:
                    return PrefectServer(api, process, log)
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    unavailable(f"the Prefect server did not answer within 120 s: {log.read_text()[-800:]}")
    raise AssertionError("unreachable")
