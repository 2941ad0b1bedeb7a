"""The test session's own clean-up: its last line says what it stopped, removed and left."""

from __future__ import annotations

import subprocess

from tests import services


def test_cleanup_removes_the_sessions_folders_and_says_what_it_left(tmp_path):
    folder = tmp_path / "made-by-the-session"
    folder.mkdir()
    saved = services.SESSION
    services.SESSION = services.Started(folders=[folder], kept=["the base image x (a cache)"])
    try:
        line = services.cleanup()
    finally:
        services.SESSION = saved
    assert not folder.exists()
    assert line == (
        "provenflow tests: started no daemon, built no image. Left on purpose: the base image x (a cache)."
    )


def test_cleanup_stops_the_daemon_it_started():
    """A stand-in long-running process in its own session, as dockerd is started."""
    daemon = subprocess.Popen(["sleep", "600"], start_new_session=True)
    saved = services.SESSION
    services.SESSION = services.Started(dockerd=daemon)
    try:
        line = services.cleanup()
    finally:
        services.SESSION = saved
    assert daemon.poll() is not None and "stopped the dockerd it started" in line
