"""The local Prefect server: one per project, in the background, state under .provenflow/prefect."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from provenflow.errors import ConfigError, last_logged_line
from provenflow.platform import pidfile
from provenflow.platform.probe import answers_ok
from provenflow.settings import get_settings


@dataclass(frozen=True)
class ServerStatus:
    running: bool
    api_url: str
    ui_url: str
    pid: int | None
    home: str
    log: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _paths() -> tuple[Path, Path, Path]:
    home = get_settings().ensure_home()
    return home / "prefect", home / "server.pid", home / "server.log"


# A Prefect variable that names the project a server belongs to: set when provenflow starts it,
# checked before any command writes to it (two projects on one machine never share a server).
OWNER_VARIABLE = "provenflow_project"


def api_url() -> str:
    s = get_settings()
    return f"http://{s.server_host}:{s.resolved_server_port}/api"


# -- authentication (Prefect's own basic auth: PREFECT_SERVER_API_AUTH_STRING on the server,
# PREFECT_API_AUTH_STRING on its clients) -----------------------------------------------------

AUTH_FILE = "prefect-auth"  # in the project's home folder, mode 0600


def _auth_path() -> Path:
    return get_settings().ensure_home() / AUTH_FILE


def auth_string() -> str | None:
    """``user:password`` the project's server requires, or None when it runs without authentication."""
    try:
        text = _auth_path().read_text().strip()
    except OSError:
        return None
    return text or None


def enable_auth() -> str:
    """The project's auth string, created (random, mode 0600) when there is none; the server uses
    it from its next start (`provenflow down`, then `provenflow up --auth`)."""
    import secrets

    existing = auth_string()
    if existing:
        return existing
    value = f"provenflow:{secrets.token_urlsafe(24)}"
    path = _auth_path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def use_auth() -> bool:
    """Give this process (and the workers it starts) the project's auth string as a Prefect client
    setting; only ever for the project's own local server (its URL is set by the caller)."""
    value = auth_string()
    if value:
        os.environ.setdefault("PREFECT_API_AUTH_STRING", value)
    return value is not None


def open_to_anyone(url: str, timeout: float = 5.0) -> bool:
    """Whether the API at URL answers a client without credentials (reads its blocks, with
    include_secrets, for anyone who reaches the port)."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/block_types/filter", data=b"{}", method="POST",
        headers={"content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code not in (401, 403)
    except (urllib.error.URLError, OSError):
        return False


def _auth_headers() -> dict[str, str]:
    import base64

    value = os.environ.get("PREFECT_API_AUTH_STRING") or auth_string()
    return {"Authorization": "Basic " + base64.b64encode(value.encode()).decode()} if value else {}


def healthy(url: str, timeout: float = 1.0) -> bool:
    return answers_ok(f"{url.rstrip('/')}/health", timeout)


def owner(url: str, timeout: float = 2.0) -> str | None:
    """The project the server at ``url`` was started for; None when it names none (or does not answer)."""
    try:
        request = urllib.request.Request(
            f"{url.rstrip('/')}/variables/name/{OWNER_VARIABLE}", headers=_auth_headers()
        )
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.loads(r.read()).get("value")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _claim(url: str) -> None:
    body = json.dumps({"name": OWNER_VARIABLE, "value": get_settings().project_id}).encode()
    request = urllib.request.Request(
        f"{url}/variables/", data=body, method="POST",
        headers={"content-type": "application/json", **_auth_headers()},
    )  # fmt: skip
    with contextlib.suppress(urllib.error.HTTPError):  # 409: already claimed (checked by the caller)
        urllib.request.urlopen(request, timeout=10).close()


def check_owner(url: str) -> None:
    """Raise unless the server answering at ``url`` is this project's."""
    found, ours = owner(url), get_settings().project_id
    if found == ours:
        return
    whose = f"the project in {found}" if found else "no provenflow project (started by someone else)"
    raise ConfigError(
        f"the Prefect server at {url.removesuffix('/api')} belongs to {whose}, not to this one ({ours}): "
        "stop it, or give this project another port with PROVENFLOW_SERVER_PORT=<port>"
    )


def _pid() -> int | None:
    _, pid_file, _ = _paths()
    try:
        pid = int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    # A stale pid file may name a process that has since reused the pid: only ours counts.
    if not {b"provenflow.platform.prefect_server", b"prefect"} & set(cmdline) or b"server" not in cmdline:
        return None
    return pid


def status() -> ServerStatus:
    prefect_home, _, log = _paths()
    url = api_url()
    return ServerStatus(
        healthy(url) and owner(url) == get_settings().project_id,
        url,
        url.removesuffix("/api"),
        _pid(),
        str(prefect_home),
        str(log),
    )


def start(timeout: float = 90.0, on_wait=None) -> ServerStatus:
    """Start the server (unless it runs) and make sure its crash automation is there."""
    current = _start(timeout, on_wait)
    if use_auth():  # this process talks to it next (the automation, `up`'s deployments)
        from provenflow.settings import refresh_prefect_settings

        refresh_prefect_settings()
    if not _crash_automation_present(current.api_url):  # Prefect is imported (~1-3 s) only to create it
        ensure_crash_detection(current.api_url)
    return current


def _crash_automation_present(api: str) -> bool:
    """Whether the crash automation is on the server, enabled, with this project's window: one
    request, the same check ``ensure_crash_automation`` makes through Prefect's client."""
    from provenflow.platform.prefect_crashes import AUTOMATION_NAME

    body = json.dumps({"automations": {"name": {"any_": [AUTOMATION_NAME]}}}).encode()
    request = urllib.request.Request(
        f"{api}/automations/filter", data=body, method="POST",
        headers={"content-type": "application/json", **_auth_headers()},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            found = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    window = 3 * get_settings().heartbeat_seconds
    return any(a.get("enabled") and (a.get("trigger") or {}).get("within") == window for a in found)


def ensure_crash_detection(api: str) -> str:
    """The automation that marks flow runs whose heartbeats stopped as Crashed (idempotent); its id."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from provenflow.platform.prefect_crashes import ensure_crash_automation

    try:
        with temporary_settings({PREFECT_API_URL: api}):
            return ensure_crash_automation(get_settings().heartbeat_seconds)
    except Exception as exc:  # an HTTP or validation error from Prefect, said in one line
        raise ConfigError(
            f"could not create the crash-detection automation on {api}: {type(exc).__name__}: {exc}"
        ) from None


def _start(timeout: float, on_wait) -> ServerStatus:
    from provenflow.monitoring import reports

    current = status()
    if current.running:
        reports.start()
        return current
    if healthy(current.api_url):
        check_owner(current.api_url)
    prefect_home, pid_file, log = _paths()
    prefect_home.mkdir(parents=True, exist_ok=True)
    s = get_settings()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_API_URL=api_url(),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
    )
    auth = auth_string()
    if auth:  # basic auth on the API and the UI; the server's own clients send it too
        env.update(PREFECT_SERVER_API_AUTH_STRING=auth, PREFECT_API_AUTH_STRING=auth)
    blocks_key = _blocks_key(prefect_home)
    if blocks_key is not None and _read(_blocks_marker(prefect_home)) == blocks_key:
        # Prefect registered its block types in this database with these packages installed. To find
        # out that nothing changed, its start would import every installed collection again
        # (prefect-kubernetes, prefect-dask, …: ~1.5 s on an idle machine, 7 s under load).
        env.update(PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION="false",
                   PREFECT_SERVER_REGISTER_BLOCKS_ON_START="false")  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "provenflow.platform.prefect_server",  # Prefect's server, with a Retry-After on its 503s
        "server",
        "start",
        "--host",
        s.server_host,
        "--port",
        str(s.resolved_server_port),
    ]
    with open(log, "ab") as out:
        process = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.record(pid_file, process)
    report_server = reports.launch()  # the drift artifacts' report links point there; starts meanwhile
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            reason = last_logged_line(log) or "no output"
            raise ConfigError(
                f"the Prefect server exited with status {process.returncode}: {reason}; see {log}"
            )
        if healthy(current.api_url):  # 1 s: a loaded server may be slow to answer; a refusal is instant
            _claim(current.api_url)
            check_owner(current.api_url)
            _note_blocks_registered(prefect_home)
            reports.start(launched=report_server)
            return status()
        if on_wait:
            on_wait()
        time.sleep(0.1)  # a refused connection costs nothing: ask often, answer as soon as it is up
    raise ConfigError(f"the Prefect server did not answer within {timeout:.0f} s; see {log}")


def _blocks_marker(prefect_home: Path) -> Path:
    return prefect_home / "provenflow-blocks-registered"


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _blocks_key(prefect_home: Path) -> str | None:
    """What Prefect's block types in the database depend on: the database file and the installed
    packages (a new collection brings new block types). None without a database yet."""
    from provenflow.tracking.environment import environment_key

    try:
        database = (prefect_home / "prefect.db").stat()
    except FileNotFoundError:
        return None
    return f"{database.st_dev}:{database.st_ino}:{environment_key()}"


def _note_blocks_registered(prefect_home: Path) -> None:
    """Once Prefect says it registered its block types (its memo store holds the registration's
    hash), remember for which database and packages, so the next start may skip it."""
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        memo = tomllib.loads((prefect_home / "memo_store.toml").read_text())
        key = _blocks_key(prefect_home)
        if memo.get("block_auto_registration") and key is not None:
            _blocks_marker(prefect_home).write_text(key)


def stop(timeout: float = 20.0) -> bool:
    """Stop the server this project started; False when none was running."""
    from provenflow.monitoring import reports

    reports.stop()
    pid = _pid()
    _, pid_file, _ = _paths()
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid() is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _pid() is not None:
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _profile_api_url() -> str | None:
    """PREFECT_API_URL from the active Prefect profile, read without importing Prefect."""
    home = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml"))
    try:
        data = tomllib.loads(path.read_text())
    except (FileNotFoundError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or data.get("active", "ephemeral")
    return data.get("profiles", {}).get(active, {}).get("PREFECT_API_URL")


def prepare_env(quiet: bool = True) -> None:
    """Prefect settings of provenflow's commands; before Prefect is imported, which reads them once."""
    if quiet:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # Heartbeats let the server's crash automation end a flow run whose process was killed.
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(get_settings().heartbeat_seconds))


def unreachable() -> str | None:
    """One line saying which Prefect server does not answer and how to start it, when PREFECT_API_URL
    (the environment's or the active profile's) names one that is down; else None. Without it,
    Prefect's client retries and ends in a long traceback ("Failed to reach API at …")."""
    configured = os.environ.get("PREFECT_API_URL")
    where = "PREFECT_API_URL in the environment"
    if not configured:
        configured, where = _profile_api_url(), "PREFECT_API_URL of the active Prefect profile"
    if not configured or healthy(configured, timeout=2.0):
        return None
    from provenflow.redact import redact

    return (
        f"no Prefect server answers at {redact(configured)} ({where}); start it with `provenflow up` (this "
        "project's server) or `prefect server start`, or unset PREFECT_API_URL to use this project's server"
    )


def connect(quiet: bool = True) -> str | None:
    """Point this process at a Prefect API before Prefect is imported.

    Order: PREFECT_API_URL in the environment, the active Prefect profile, then this project's
    local server. Returns a notice to show once when none is there and Prefect will fall back to
    its ephemeral mode, else None. ``quiet`` keeps flow and task logs off the terminal (they still
    reach the Prefect UI), for commands that print their own summary.
    """
    prepare_env(quiet)
    try:
        if os.environ.get("PREFECT_API_URL") or _profile_api_url():
            return None
        url = api_url()
        if healthy(url, timeout=0.5):
            use_auth()  # the project's own server: its auth string, if it has one
            check_owner(url)
            os.environ["PREFECT_API_URL"] = url
            return None
    finally:
        from provenflow.settings import refresh_prefect_settings

        refresh_prefect_settings()  # a run forked from the warm runner imported Prefect before this
    return (
        f"No Prefect server at {url.removesuffix('/api')} and PREFECT_API_URL is not set: using Prefect's "
        "ephemeral mode (8-16 s per command, runs not kept for the UI). Start one with `provenflow up`."
    )
