"""Real services for the tests: a PostgreSQL cluster and a Prefect API server, each on 127.0.0.1.

A service that cannot start skips the tests that need it, with the reason, except under
CI=true, where it fails them: in CI every service must be there.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

import pytest

# The provenflow command of the environment running the tests (works without an activated venv).
CLI = str(Path(sys.executable).parent / "provenflow")


def unavailable(reason: str):
    """Skip, or fail under CI=true, because a service is missing."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A port P on 127.0.0.1 where P and P + 1 are free (a project's report server takes its Prefect
    server's port + 1), below the kernel's ephemeral range. A port the kernel hands out for bind(0)
    is odd, and P + 1 is then an even port, which is what connect() gives outgoing connections: a
    report server failed to bind one in CI."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low - 1)
        if _bindable(port) and _bindable(port + 1):
            return port
    raise RuntimeError("no two free ports in a row below the ephemeral range")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


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
        # The UI on, calling this server (not :4200): the browser tests open it (tests/ui/test_browser.py).
        PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_UI_URL=f"http://127.0.0.1:{port}",
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = home / "server.log"
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "provenflow.platform.prefect_server", "server", "start", "--host", "127.0.0.1",
             "--port", str(port)],
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


@dataclass
class Started:
    """What this test session started or built outside its own temporary folders, so its end can stop
    and remove it (``cleanup``) and say above pytest's closing line what it left. Before, ``make test`` left dockerd
    and containerd running, ~4 GB of images and ~1 GB in the temporary folder."""

    dockerd: subprocess.Popen | None = None
    registries: list[str] = field(default_factory=list)  # addresses: the images pushed there are ours
    folders: list[Path] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


SESSION = Started()


def _our_images(client) -> list:
    """Images tagged or pushed to a registry this session started (an untagged image of another session
    on a shared daemon is not ours)."""
    if not SESSION.registries:
        return []
    ours = []
    for image in client.images.list():
        names = [*(image.attrs.get("RepoTags") or []), *(image.attrs.get("RepoDigests") or [])]
        if any(n.startswith(f"{address}/") for n in names for address in SESSION.registries):
            ours.append(image)
    return ours


def cleanup() -> str:
    """Remove the session's images, stop the dockerd it started (its containerd goes with it), remove
    its folders; one line saying what was done and what was left, and why."""
    done, left = [], []
    if SESSION.registries:
        try:
            import docker

            client = docker.from_env()
            images = _our_images(client)
            size = sum(i.attrs.get("Size", 0) for i in images)
            for image in images:
                with contextlib.suppress(Exception):
                    client.images.remove(image.id, force=True)
            if images:
                done.append(f"removed {len(images)} test images ({size / 1e9:.1f} GB)")
        except Exception as exc:  # the daemon is gone already: nothing of ours is left in it
            left.append(f"images not checked ({type(exc).__name__})")
    if SESSION.dockerd is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(SESSION.dockerd.pid, signal.SIGTERM)
        try:
            SESSION.dockerd.wait(timeout=60)
            done.append("stopped the dockerd it started (and its containerd)")
        except subprocess.TimeoutExpired:
            os.killpg(SESSION.dockerd.pid, signal.SIGKILL)
            done.append("killed the dockerd it started (it did not stop within 60 s)")
    for folder in SESSION.folders:
        shutil.rmtree(folder, ignore_errors=True)
    left += SESSION.kept
    line = "provenflow tests: " + ("; ".join(done) or "started no daemon, built no image")
    return line + (f". Left on purpose: {'; '.join(left)}." if left else ".")


def docker_engine():
    """A Docker client; starts Debian's dockerd when none answers and we are root."""
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:
        unavailable(f"the docker SDK is not installed: {exc}")
    try:
        client = docker.from_env()
        client.ping()
        return client
    except DockerException:
        pass
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        unavailable("no Docker engine answers and dockerd cannot be started here (needs root and docker.io)")
    log = open("/tmp/provenflow-dockerd.log", "ab")  # noqa: SIM115 - outlives this function with dockerd
    SESSION.dockerd = subprocess.Popen(
        ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            client = docker.from_env()
            client.ping()
            return client
        except DockerException:
            time.sleep(0.5)
    unavailable("dockerd did not answer within 60 s; see /tmp/provenflow-dockerd.log")


@dataclass
class Registry:
    address: str
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def start_registry(base: Path) -> Registry:
    """Debian's docker-registry on a free 127.0.0.1 port (Docker trusts plain HTTP on loopback)."""
    binary = shutil.which("docker-registry")
    if not binary:
        unavailable("docker-registry is not installed (Debian package docker-registry)")
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + str(base / "data") +
        "\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" + str(port) + "\n"
    )  # fmt: skip
    log = open(base / "registry.log", "wb")  # noqa: SIM115 - the registry's output, for the skip reason
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                SESSION.registries.append(f"127.0.0.1:{port}")
                return Registry(f"127.0.0.1:{port}", process)
        except OSError:
            time.sleep(0.2)
    process.kill()
    unavailable(f"docker-registry did not start: {(base / 'registry.log').read_text()[-500:]}")
    raise AssertionError("unreachable")


def ensure_base_image(client, image: str, repo: Path) -> str:
    from docker.errors import ImageNotFound

    kept = f"the base image {image} (built once with debootstrap, ~1 min; `docker rmi {image}` removes it)"
    if kept not in SESSION.kept:
        SESSION.kept.append(kept)
    try:
        client.images.get(image)
        return image
    except ImageNotFound:
        pass
    done = subprocess.run([str(repo / "infra" / "serving" / "make-base-image.sh"), image],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    if done.returncode != 0:
        unavailable(f"could not build the base image {image}: {done.stderr.strip()[-500:]}")
    return image
