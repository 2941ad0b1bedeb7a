"""Background processes known by a pid file: is it still ours, and stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def live_pid(pid_file: Path, owns: Callable[[bytes], bool]) -> int | None:
    """The pid in PID_FILE if that process runs and OWNS its command line (a stale pid file may
    name a pid reused since, or a zombie with an empty command line)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if cmdline and owns(cmdline) else None


def record(pid_file: Path, process: subprocess.Popen) -> None:
    """Write PROCESS's pid to PID_FILE, or kill it when that is interrupted: started in its own
    session, a process whose pid was never written is one `provenflow down` cannot find (seen: a
    Ctrl-C in `up` between starting the report server and writing its pid)."""
    try:
        pid_file.write_text(str(process.pid))
    except BaseException:
        process.kill()
        raise


def terminate(pid: int, running: Callable[[], bool], timeout: float, group: bool = False) -> None:
    """SIGTERM (the process group with GROUP), wait up to TIMEOUT for RUNNING to turn false, then SIGKILL."""
    kill = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running():
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        time.sleep(0.05)
    if running():
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
