"""Background processes known by a pid file: is it still ours, and stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
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
