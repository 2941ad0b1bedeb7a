"""The project's Prefect server with Prefect's own basic auth (issue 19, item 4): `provenflow up --auth`
starts it with PREFECT_SERVER_API_AUTH_STRING, and this project's clients send PREFECT_API_AUTH_STRING.
A real server process on a free port (its own home folder); without the string, Secret blocks are
not readable through the API."""

from __future__ import annotations

import os
import stat

import httpx
import pytest

from tests.services import free_port


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    for key in [k for k in os.environ if k.startswith(("PROVENFLOW_", "PREFECT_API"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PROVENFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PROVENFLOW_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("PROVENFLOW_REPORTS_PORT", str(free_port()))  # not the server's + 1, which may be taken
    monkeypatch.chdir(tmp_path)
    from provenflow.settings import get_settings

    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_a_server_with_auth_refuses_anonymous_clients_and_answers_the_project(own_home, monkeypatch):
    from provenflow.platform import server

    secret = server.enable_auth()
    path = own_home / "home" / server.AUTH_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and server.enable_auth() == secret
    status = server.start()
    try:
        api = status.api_url
        assert server.healthy(api), "health stays open for probes"
        anonymous = httpx.post(f"{api}/block_documents/filter", json={"include_secrets": True})
        assert anonymous.status_code == 401
        assert server.open_to_anyone(api) is False
        user, password = secret.split(":", 1)
        assert httpx.post(f"{api}/block_documents/filter", json={}, auth=(user, password)).status_code == 200
        monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
        assert server.connect() is None  # the project's CLI finds its server, and sends the string
        assert os.environ["PREFECT_API_AUTH_STRING"] == secret
        assert server.status().running, "the owner check passes with the string"
    finally:
        server.stop()


def test_a_server_without_auth_is_open_and_says_so(own_home):
    from provenflow.platform import server

    status = server.start()
    try:
        assert server.auth_string() is None and server.open_to_anyone(status.api_url) is True
    finally:
        server.stop()
