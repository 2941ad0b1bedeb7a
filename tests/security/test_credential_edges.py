"""Credentials at the edges (issue 19, item 4): passwords with URL delimiters in them, every CLI
error path masked, one source block per dataset that a refused run never overwrites.

Real parts as in test_secrets: the CLI in a subprocess, a real Prefect server, an HTTP data server
that wants basic auth; afterwards Prefect, the ledger, the store and the output are searched."""

# ruff: noqa: F811  (data_server and marker are fixtures, imported or overridden here)
from __future__ import annotations

import json
import secrets

import pytest

from tests.security.test_secrets import (  # noqa: F401  (data_server is a fixture)
    USER,
    _flow_runs_since,
    _now,
    assert_nowhere,
    data_server,
    pf,
)

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def marker() -> str:
    """A password holding every character that ends a URL's authority early."""
    return f"a/b?c#d{secrets.token_hex(10)}"


def test_a_password_with_slash_question_mark_and_hash_works_and_is_nowhere(
    project,
    prefect_api,
    data_server,
    marker,
):
    since = _now()
    done = pf(project, "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{marker}"), "--json")
    assert done.returncode == 0, done.stderr
    assert data_server.authorization in data_server.seen, "the whole password was sent"
    run_id = json.loads(done.stdout)["run_id"]
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids={run_id},
                   outputs=[done.stdout, done.stderr])  # fmt: skip
    tail = marker.rpartition("#")[2]  # what a parser splitting at '#' would have left in the URL
    assert_nowhere(tail, project=project, api=prefect_api, since=since, flow_run_ids={run_id},
                   outputs=[done.stdout, done.stderr])  # fmt: skip


def test_cli_error_paths_print_no_password(project, prefect_api, marker):
    since = _now()
    unreachable = f"http://{USER}:{marker}@127.0.0.1:9/x.csv"
    outputs = []
    for args in (
        ("data-run", "--name", "s", "--source", unreachable),
        ("feedback", "m@1", "--source", unreachable),
        ("feedback", "m@1", "--source", f"http://{USER}:plain{marker[8:]}@127.0.0.1:9/x.csv"),
        ("model-run", "--dataset", unreachable, "--target", "y", "--estimator", "sklearn.tree.DecisionTreeClassifier"),
    ):  # fmt: skip
        done = pf(project, *args)
        assert done.returncode != 0, (args, done.stdout)
        assert "Traceback" not in done.stderr, done.stderr[-2000:]
        outputs += [done.stdout, done.stderr]
        assert marker not in done.stdout + done.stderr and marker[8:] not in done.stdout + done.stderr, (
            args, done.stderr,
        )  # fmt: skip
    ids = {r["id"] for r in _flow_runs_since(prefect_api, since)}
    assert_nowhere(marker, project=project, api=prefect_api, since=since, flow_run_ids=ids, outputs=outputs)


def test_a_refused_run_leaves_the_datasets_block_and_others_keep_theirs(
    project,
    prefect_api,
    data_server,
    marker,
):
    from prefect.blocks.system import Secret

    good = pf(project, "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{marker}"), "--json")
    assert good.returncode == 0, good.stderr
    block = (
        json.loads(good.stdout)["parameters"]["source_credentials"] if "parameters" in good.stdout else None
    )
    wrong = f"wrong{secrets.token_hex(8)}"
    refused = pf(project, "data-run", "--name", "s", "--source", data_server.url(f"{USER}:{wrong}"))
    assert refused.returncode == 1 and "401" in refused.stderr, refused.stderr
    # Another dataset on the same host, with other credentials, has its own block.
    other = pf(project, "data-run", "--name", "t", "--source", data_server.url(f"{USER}:{wrong}"))
    assert other.returncode == 1
    assert Secret.load("provenflow-source-s").get() == f"{USER}:{marker}", block
    # A retry of the dataset without credentials in the URL finds them again.
    again = pf(project, "data-run", "--name", "s", "--source", data_server.url(), "--json",
               "--source-credentials", "provenflow-source-s")  # fmt: skip
    assert again.returncode == 0, again.stderr
