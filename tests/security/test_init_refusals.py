"""`provenflow init` edits a team's prefect.yaml only when it can do so safely: links, non-regular files,
other encodings, alias bombs and tags are refused with one `Error:` line, nothing written, in
bounded time (the CLI in a subprocess, as a user runs it)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.services import CLI

BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    + ["deployments: []", ""]
)


def run_init(project: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    env["PROVENFLOW_HOME"] = str(project / ".provenflow")
    started = time.perf_counter()
    result = subprocess.run([CLI, "init"], cwd=project, capture_output=True, text=True, env=env, timeout=60)
    return result, time.perf_counter() - started


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr[-2000:]
    return lines[0]


def test_a_symlinked_prefect_yaml_is_refused_and_its_target_untouched(tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("deployments: []\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "prefect.yaml").symlink_to(outside)
    result, _ = run_init(project)
    assert "symbolic link" in one_error_line(result)
    assert outside.read_text() == "deployments: []\n"


def test_a_dangling_link_creates_nothing(tmp_path):
    (tmp_path / "prefect.yaml").symlink_to(tmp_path / "nowhere.yaml")
    result, _ = run_init(tmp_path)
    assert "symbolic link" in one_error_line(result)
    assert not (tmp_path / "nowhere.yaml").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_non_regular_file_is_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "prefect.yaml"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    result, took = run_init(tmp_path)
    assert "not a regular file" in one_error_line(result)
    assert took < 30


CONTENTS = {
    "latin-1": ("name: caf\xe9\ndeployments: []\n".encode("latin-1"), "UTF-8"),
    "utf-16": ("name: team\ndeployments: []\n".encode("utf-16"), "UTF-8"),
    "alias bomb": (BOMB.encode(), "aliases"),
    "python tag": (b"name: !!python/object/apply:os.system ['true']\ndeployments: []\n", "tag"),
    "custom tag": (b"name: !team thing\ndeployments: []\n", "tag"),
}


@pytest.mark.parametrize("name", sorted(CONTENTS))
def test_what_init_cannot_read_safely_is_refused_in_one_line(tmp_path, name):
    content, says = CONTENTS[name]
    (tmp_path / "prefect.yaml").write_bytes(content)
    result, took = run_init(tmp_path)
    assert says in one_error_line(result)
    assert (tmp_path / "prefect.yaml").read_bytes() == content
    assert took < 30, f"init took {took:.1f} s"  # the bomb kept it at 100% CPU for minutes
