"""The warm runner: one background process per project with Prefect, pandas, scikit-learn and
Great Expectations imported once; each run of a flow command is a process forked from it.

A command such as ``provenflow model-run …`` used to pay ~9 s of imports and start-up for a
0.3 s fit. With the runner up, the CLI process (which imports none of that) sends its arguments,
working directory, environment and its stdin/stdout/stderr (as file descriptors, SCM_RIGHTS)
over a Unix socket (``.provenflow/runner.sock``, mode 0600: only this user); the runner forks a
handler, the handler forks the run, which puts the caller's descriptors on 0/1/2, takes on the
caller's directory and environment, and runs the same CLI command there. Output goes straight to
the caller's terminal; the run's exit status comes back over the socket.

Isolation: the runner itself never runs anything after its imports (no threads, no Prefect
client, no event loop exist in it when it forks), so a run that crashes, leaks or corrupts its
interpreter dies with its own process. Each run is an ordinary Prefect flow run, with its own pid
in the ledger (crash detection as for any process). When the caller goes away (Ctrl-C, kill -9),
the handler kills the run, as if it had been the caller's own process.

Nothing of a request is logged: the environment may hold credentials (it is read only by the
run, from the socket, as it would from its parent). When the runner is not up, or was started
from another interpreter, import path, provenflow code or set of installed packages, the CLI
runs the command in its own process as before.

A process worker's flow runs fork from it too (``submit_flow_run``, called by
``provenflow.platform.engine_client``, the command ``provenflow.platform.worker`` gives each run): the
run executes ``prefect.engine`` for the worker's ``PREFECT__FLOW_RUN_ID`` instead of a CLI command. The
client stays the process the worker watches and kills: it passes SIGTERM and SIGINT on to the run and
exits as the run did (the same status, or the same signal).

``start``/``stop``/``status`` are what ``provenflow server start|stop`` (and ``provenflow up``) call.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from provenflow.platform.pidfile import live_pid, terminate

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

# Commands that run flows, and those that read the ledger (SQLAlchemy and the models alone take
# ~0.3 s to import): the ones worth forking from warm imports.
COMMANDS = frozenset({
    "data-run", "model-run", "sweep", "reproduce", "promote", "retrain", "drift-check", "release", "deploy",
    "runs", "datasets", "models", "lineage", "compare", "quality-check", "feedback",
})  # fmt: skip
# Of those, the ones that only read the ledger: they need no Prefect settings of their own unless
# they connect to Prefect (``server.connect`` refreshes them then), which saves the ~0.1-0.3 s the
# refresh takes (pydantic-settings re-reads every source, logging is set up again).
_READERS = frozenset({"runs", "datasets", "models", "lineage", "compare", "server"})
# The command line the runner serves, named rather than imported: the CLI hands commands to the runner,
# so the runner importing it back would tie the two into one knot. The module gives ``app`` (typer),
# ``run()``, ``warm_up()`` and ``fresh_consoles()``.
ENTRY = "provenflow.cli.main"
_entry = None  # that module, once the runner process has imported it
_PRELOAD = (
    "provenflow.tracking.catalog",
    "provenflow.tracking.lineage",
    "provenflow.storage.verify",
    "provenflow.tracking.crashes",
    "provenflow.flows.data_run",
    "provenflow.flows.model_run",
    "provenflow.flows.sweep",
    "provenflow.flows.reproduce",
    "provenflow.flows.promote",
    "provenflow.flows.drift_monitor",
    "provenflow.flows.quality_monitor",
    "great_expectations",
    "sklearn.linear_model",
    "sklearn.ensemble",
    "sklearn.model_selection",
    "sklearn.metrics",
    "pyarrow.parquet",
    # What a run imported on its own the first time (measured: ~2 s of a model-run under load).
    "provenflow.platform.server",
    "provenflow.platform.prefect_crashes",
    "prefect.task_engine",
    "prefect.concurrency.sync",
    "prefect.utilities.visualization",
    "anyio._backends._asyncio",
    "fastapi",
    "opentelemetry.metrics",
    "opentelemetry._logs",
    "pyarrow.dataset",
    "pyarrow.pandas_compat",
    "sklearn.impute",
    "rich.status",
    "pydantic.color",
)
_HEADER = struct.Struct("!I")
_KILL_GRACE = 5.0  # seconds a run gets after SIGTERM when its caller is gone, before SIGKILL

in_runner = False  # True inside a forked run: the CLI then runs the command itself


@dataclass(frozen=True)
class RunnerStatus:
    running: bool
    pid: int | None
    socket: str
    log: str

    def as_dict(self) -> dict:
        return dict(self.__dict__)


# -- where things are (no settings import: the client path must stay light) ----------------------


def home() -> Path:
    """The project's state folder (PROVENFLOW_HOME, else .provenflow of the project), where its runner listens."""
    return _home()


def _home() -> Path:
    home = os.environ.get("PROVENFLOW_HOME")
    if home:
        return Path(home).expanduser().resolve()
    from provenflow.project import project_root

    return (project_root() / ".provenflow").resolve()


def _connect(home: Path, timeout: float | None = None) -> socket.socket | None:
    """A connection to the runner of HOME, or None when none listens there."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(_address(home))
    except OSError:
        client.close()
        return None
    client.settimeout(None)
    return client


def _address(home: Path) -> str:
    path = str(home / "runner.sock")
    if len(path.encode()) < 100:
        return path
    # Unix socket paths are limited to 108 bytes: reach a deep project through a directory fd.
    fd = os.open(home, os.O_PATH)
    return f"/proc/self/fd/{fd}/runner.sock"


# -- identity: a runner serves only callers that would import the same code ---------------------


def fingerprint() -> dict:
    """What a forked run inherits and must match the caller's: interpreter, import path, the
    installed packages' state and provenflow's own code (flows/, tasks/, provenflow/)."""
    import provenflow
    import provenflow.blocks
    import provenflow.flows
    import provenflow.tasks
    from provenflow.tracking.environment import environment_key

    code = Path(provenflow.__file__).resolve().parent
    newest = 0
    # flows/, tasks/ and blocks/ are inside provenflow/ when installed, beside it in a checkout.
    packages = [provenflow, provenflow.flows, provenflow.tasks, provenflow.blocks]
    for folder in {Path(p).resolve() for package in packages for p in package.__path__}:
        for path in folder.rglob("*.py"):
            with contextlib.suppress(OSError):
                newest = max(newest, path.stat().st_mtime_ns)
    return {
        "python": _python(),
        "path": _import_path(),
        "packages": environment_key(),
        "code": f"{code}:{newest}",
    }


def _import_path() -> list[str]:
    # an entry that is no folder (setuptools' editable finder hook) is compared as it is
    return [os.path.realpath(p) if os.path.isabs(p) else p for p in sys.path[1:] if p]


def _python() -> str:
    # python and python3 are one interpreter; a venv reached through a symlinked folder is one venv
    return f"{os.path.realpath(sys.prefix)}:{os.path.realpath(sys.executable)}"


# -- the client -----------------------------------------------------------------------------------


def command_of(argv: list[str]) -> str | None:
    """The command name in ARGV (skipping global options such as --debug), or None."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def submit(argv: list[str]) -> int | None:
    """Run ``provenflow ARGV`` in the warm runner with this process's terminal; its exit status,
    or None when no runner can take it (the caller then runs the command itself)."""
    command = command_of(argv)
    status_check = command == "server" and "status" in argv  # not start/stop: those manage the runner
    if in_runner or (command not in COMMANDS and not status_check) or "--help" in argv:
        return None
    try:
        home = _home()
    except OSError:
        return None
    reply = _submit(home, {"argv": argv})
    if reply is None:
        return None
    if reply.get("signal"):
        return _died(f"the run process was killed by signal {reply['signal']} ({reply.get('name', '')})")
    return int(reply["exit"])


def submit_flow_run(home: Path) -> dict | None:
    """Run ``prefect.engine`` for the flow run in ``PREFECT__FLOW_RUN_ID`` in the warm runner of HOME,
    with this process's environment, directory and stdout/stderr; SIGTERM and SIGINT sent to this
    process go on to the run. The run's end (``{"exit": code}`` or ``{"signal": number}``), or None
    when no runner can take it (the caller then starts the engine itself)."""
    if in_runner:
        return None

    conn = _connect(home)
    if conn is None:
        return None

    def forward(number: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(b"term\n" if number == signal.SIGTERM else b"int\n")

    forwarded = {signal.SIGTERM, signal.SIGINT}
    # Held until the request is out: a signal that came sooner follows it instead of preceding it.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, forwarded)

    def sent() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    # From here on a cancellation (the worker's SIGTERM) is the run's to handle.
    previous = {number: signal.signal(number, forward) for number in forwarded}
    try:
        return _submit(home, {"argv": ["prefect.engine"], "engine": True}, conn, sent)
    finally:
        sent()
        for number, handler in previous.items():
            signal.signal(number, handler)


def _submit(
    home: Path, request: dict, conn: socket.socket | None = None, sent: Callable[[], None] | None = None
) -> dict | None:
    conn = conn or _connect(home)
    if conn is None:
        return None
    with conn:
        request = {
            **request,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "python": _python(),
            "path": _import_path(),
            "path0": sys.path[0] if sys.path else "",
        }
        payload = json.dumps(request).encode()
        fds = array.array("i", [0, 1, 2])
        try:
            conn.sendmsg([_HEADER.pack(len(payload)), payload], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
            if sent is not None:
                sent()
            return _await_exit(conn)
        except (OSError, ValueError):
            return None


def _await_exit(conn: socket.socket) -> dict | None:
    reader = conn.makefile("rb")
    try:
        while True:
            try:
                line = reader.readline()
                break
            except KeyboardInterrupt:
                conn.sendall(b"int\n")  # the run gets SIGINT, as it would in this process
    finally:
        reader.close()
    if not line:
        return {"exit": _died("the runner went away during the run")}
    reply = json.loads(line)
    if "fallback" in reply:
        sys.stderr.write(f"Note: {reply['fallback']}\n")
        return None
    if os.environ.get("PROVENFLOW_RUNNER_CPU"):  # for benchmarks on a loaded machine: CPU, not wall time
        sys.stderr.write(f"runner: the run used {reply.get('cpu')} s of CPU\n")
    return reply


def _died(message: str) -> int:
    sys.stderr.write(f"Error: {message}; run `provenflow runs list` to see the run marked crashed\n")
    return 1


def ping(home: Path | None = None, timeout: float = 1.0) -> int | None:
    """The runner's pid when one answers for HOME."""
    conn = _connect(home or _home(), timeout)
    if conn is None:
        return None
    with conn:
        conn.settimeout(timeout)
        payload = b'{"ping": true}'
        try:
            conn.sendall(_HEADER.pack(len(payload)) + payload)
            reply = conn.makefile("rb").readline()
            return int(json.loads(reply)["pong"]) if reply else None
        except (OSError, ValueError, KeyError):
            return None


# -- start / stop / status (called by `provenflow server start|stop|status` and `provenflow up`) ----


def _paths(home: Path) -> tuple[Path, Path]:
    return home / "runner.pid", home / "runner.log"


def _pid(home: Path) -> int | None:
    return live_pid(_paths(home)[0], lambda cmdline: b"provenflow.platform.runner" in cmdline)


def status(home: Path | None = None) -> RunnerStatus:
    home = home or _home()
    pid = ping(home)
    return RunnerStatus(pid is not None, pid or _pid(home), str(home / "runner.sock"), str(_paths(home)[1]))


def start(home: Path | None = None, wait: float = 0.0) -> RunnerStatus:
    """Start the runner in the background unless one runs; it takes its imports (10-20 s) before it
    listens, and commands run in their own process until then. WAIT: seconds to wait for it to listen."""
    home = home or _home()
    current = status(home)
    if current.running or _pid(home) is not None:
        return _wait_listening(home, wait)
    import subprocess  # not at module level: the client path (runner.submit) stays light

    home.mkdir(parents=True, exist_ok=True)
    pid_file, log = _paths(home)
    # The runner works in HOME: a relative PYTHONPATH entry (`PYTHONPATH=.`) would name another
    # folder there, the commands would find its import path different and never use it.
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(e) if e else e for e in env["PYTHONPATH"].split(os.pathsep))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", "from provenflow.platform.runner import serve; serve()", "provenflow.platform.runner",
             ENTRY, str(home)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=home, env=env,
        )  # fmt: skip
    pid_file.write_text(str(process.pid))
    # Until the child execs, its command line is its parent's, and nothing that finds the runner by
    # its pid file (`stop`, `down`, a second `start`) knows it: a `down` right after an `up` on a busy
    # machine left a runner behind. A few milliseconds, normally.
    deadline = time.monotonic() + 5
    while _pid(home) is None and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    return _wait_listening(home, wait, process)


def _wait_listening(home: Path, wait: float, process: subprocess.Popen | None = None) -> RunnerStatus:
    deadline = time.monotonic() + wait
    while True:
        current = status(home)
        # A child just forked still shows its parent's command line until it execs: for the one
        # we started, ask whether it exited instead.
        gone = process.poll() is not None if process is not None else _pid(home) is None
        if current.running or time.monotonic() >= deadline or gone:
            return current
        time.sleep(0.2)


def stop(home: Path | None = None, timeout: float = 10.0) -> bool:
    """Stop the runner (runs in flight finish on their own); False when none was running."""
    home = home or _home()
    pid = _pid(home)
    pid_file, _ = _paths(home)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    terminate(pid, lambda: _pid(home) is not None, timeout)
    pid_file.unlink(missing_ok=True)
    return True


# -- the runner process ---------------------------------------------------------------------------


def serve() -> None:
    """The runner's main loop: import once, then accept and fork. Started by ``start``."""
    import importlib
    import threading

    home = Path(sys.argv[-1])
    for name in (sys.argv[-2], *_PRELOAD):
        importlib.import_module(name)
    from provenflow.tracking.environment import capture_environment

    capture_environment()  # each run inherits the package list
    global _entry
    _entry = importlib.import_module(sys.argv[-2])
    _build_cli_once(_entry.app)
    _entry.warm_up()
    identity = fingerprint()
    if threading.active_count() != 1:  # a thread in a forking parent would be copied without its state
        raise RuntimeError(f"the runner has threads after its imports: {threading.enumerate()}")

    path = home / "runner.sock"
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is born 0600: only this user may submit runs
    try:
        listener.bind(_address(home))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    listener.listen(64)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    print(f"runner {os.getpid()} listening on {path}", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            pid = os.fork()
            if pid == 0:
                listener.close()
                code = 1
                try:
                    _handle(conn, identity)
                    code = 0
                finally:
                    os._exit(code)
            conn.close()
            _reap()
    finally:
        with contextlib.suppress(OSError):
            if path.exists():
                path.unlink()


def _build_cli_once(app: object) -> None:
    """Typer builds the click command tree of the whole CLI at every call (evaluating every
    command's annotations: 0.1-0.4 s measured); build it once here and let each run reuse it."""
    import typer.main

    built, build = typer.main.get_command(app), typer.main.get_command
    typer.main.get_command = lambda typer_app: built if typer_app is app else build(typer_app)


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, ancillary, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * array.array("i").itemsize))
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    (size,) = _HEADER.unpack(data[: _HEADER.size])
    body = data[_HEADER.size :]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("the caller went away")
        body += chunk
    return json.loads(body), list(fds)


def _reply(conn: socket.socket, message: dict) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


def _handle(conn: socket.socket, identity: dict) -> None:
    """In the handler process: check the caller, fork the run, wait for it or for the caller to go."""
    request, fds = _receive(conn)
    if request.get("ping"):
        return _reply(conn, {"pong": os.getppid()})
    if len(fds) != 3:
        return _reply(conn, {"fallback": "the runner did not receive the terminal; running in this process"})
    mismatch = _mismatch(request, identity)
    if mismatch:
        return _reply(
            conn,
            {"fallback": f"the warm runner differs from this command in {mismatch}; running in "
             "this process (restart the runner: `provenflow server stop && provenflow server start`)"},
        )  # fmt: skip
    pid = os.fork()
    if pid == 0:
        conn.close()
        _run(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    _reply(conn, _supervise(conn, pid, group=bool(request.get("engine"))))


def _mismatch(request: dict, identity: dict) -> str | None:
    if request["python"] != identity["python"]:
        return "its Python"
    if request["path"] != identity["path"]:
        theirs, ours = request["path"], identity["path"]
        differ = next(
            (i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b),
            min(len(theirs), len(ours)),
        )
        return (
            f"its import path (PYTHONPATH): entry {differ + 1} is {theirs[differ] if differ < len(theirs) else 'absent'!r}"
            f" here, {ours[differ] if differ < len(ours) else 'absent'!r} in the runner"
        )
    current = fingerprint()
    if current["packages"] != identity["packages"]:
        return "its installed packages"
    if current["code"] != identity["code"]:
        return "provenflow's code"
    return None


def _supervise(conn: socket.socket, pid: int, group: bool = False) -> dict:
    """Wait for the run; forward Ctrl-C (and a worker's SIGTERM); kill the run when its caller is gone.
    GROUP: signal the run's whole process group, as Prefect's worker signals its flow run's (a flow run's
    own subprocesses go with it on cancellation)."""

    def send(number: int) -> None:
        if group:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, number)  # the run leads its group (setpgid in _run)...
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)  # ...unless it has not got that far yet

    pidfd = os.pidfd_open(pid)
    try:
        while True:
            ready, _, _ = select.select([pidfd, conn], [], [])
            if pidfd in ready:
                break
            message = conn.recv(64)
            if message:  # "int": the caller's Ctrl-C; "term": a worker cancelling its flow run
                for word in message.split():
                    send(signal.SIGTERM if word == b"term" else signal.SIGINT)
                continue
            # The caller died (or was killed): its run goes with it, as an in-process run would.
            send(signal.SIGTERM)
            ready, _, _ = select.select([pidfd], [], [], _KILL_GRACE)
            if not ready:
                send(signal.SIGKILL)
            break
    finally:
        os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    cpu = round(usage.ru_utime + usage.ru_stime, 3)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return {"signal": number, "name": signal.Signals(number).name, "cpu": cpu}
    return {"exit": os.waitstatus_to_exitcode(status), "cpu": cpu}


def _run(request: dict, fds: list[int]) -> None:
    """In the run process: become the caller (terminal, directory, environment) and run its command."""
    global in_runner
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.setpgid(0, 0)  # its own group: the runner's signals are not its
        in_runner = True
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = request["path0"]  # the caller's script folder, not the runner's ''
        _fresh_process_state(prefect=request.get("engine") or command_of(request["argv"]) not in _READERS)
        try:
            if request.get("engine"):
                _run_engine()
            else:
                sys.argv = ["provenflow", *request["argv"]]
                _entry.run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        # What an interpreter does at exit, in its order, then leave without the runner's own
        # teardown. First the threads' exit hooks and joins (threading._shutdown): joblib's loky and
        # concurrent.futures shut their process pools down there. Without it, multiprocessing's
        # atexit hook below joined a sweep's idle loky workers, which wait 300 s for work: the run
        # hung at its end (tests/test_runner.py's sweep test).
        with contextlib.suppress(BaseException):
            import threading

            threading._shutdown()
        # Prefect drains its log and event workers in atexit handlers.
        with contextlib.suppress(BaseException):
            import atexit

            atexit._run_exitfuncs()
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run_engine() -> None:
    """What ``python -m prefect.engine`` runs: the flow run in PREFECT__FLOW_RUN_ID, from loading its
    deployment's flow (pull steps included) to its final state; it exits through SystemExit."""
    import runpy
    import warnings

    sys.argv = [sys.executable]
    with warnings.catch_warnings():
        # runpy warns that prefect.engine is imported already (the runner's imports did it): expected.
        warnings.filterwarnings(
            "ignore", message=".*found in sys.modules after import", category=RuntimeWarning
        )
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)


def _fresh_process_state(prefect: bool = True) -> None:
    """What a new process would have had that a fork copied from the runner instead; PREFECT:
    also Prefect's settings from the caller's environment (else left to ``server.connect``)."""
    import numpy as np

    from provenflow.settings import get_settings

    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    get_settings.cache_clear()  # settings come from the caller's environment
    _entry.fresh_consoles()
    np.random.seed()  # a fresh process draws fresh entropy; Python's `random` reseeds itself at fork
    if prefect:
        from provenflow.settings import refresh_prefect_settings

        refresh_prefect_settings()
