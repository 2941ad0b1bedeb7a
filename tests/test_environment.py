"""capture_environment is cached by the import path's state and recomputed when packages change."""

from __future__ import annotations

import json
import shutil
import time

from provenflow.tracking.environment import capture_environment, environment_key


def _install(site, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _tick() -> None:
    time.sleep(0.02)  # directory mtimes are nanoseconds, but some filesystems round to 10 ms


def test_installing_and_removing_a_package_invalidates_the_cache(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _install(site, "alpha", "1.0")
    paths = [str(site)]
    assert capture_environment(paths, cache).packages == ("alpha==1.0",)
    assert len(list(cache.glob("environment-*.json"))) == 1

    _tick()
    _install(site, "tiny-pkg", "0.1")
    assert capture_environment(paths, cache).packages == ("alpha==1.0", "tiny-pkg==0.1")

    _tick()
    shutil.rmtree(site / "alpha-1.0.dist-info")
    _install(site, "alpha", "2.0")  # an upgrade: pip removes one dist-info and adds another
    assert capture_environment(paths, cache).packages == ("alpha==2.0", "tiny-pkg==0.1")

    _tick()
    shutil.rmtree(site / "tiny-pkg-0.1.dist-info")
    assert capture_environment(paths, cache).packages == ("alpha==2.0",)


def test_an_unchanged_environment_is_read_from_the_cache_file(tmp_path):
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _install(site, "alpha", "1.0")
    paths = [str(site)]
    capture_environment(paths, cache)
    # Another process (no memory of it) reads the file: what the file says is what it gets.
    (entry,) = cache.glob("environment-*.json")
    data = json.loads(entry.read_text())
    assert data["key"] == environment_key(paths)
    data["packages"] = ["from-the-cache==1"]
    entry.write_text(json.dumps(data))
    from provenflow.tracking import environment

    environment._memory.clear()
    assert capture_environment(paths, cache).packages == ("from-the-cache==1",)


def test_the_default_environment_lists_this_interpreters_packages(tmp_path):
    state = capture_environment(cache_dir=tmp_path)
    assert any(p.startswith("prefect==") for p in state.packages)
    assert capture_environment(cache_dir=tmp_path) is state  # same state: kept in memory
