"""Packaging beyond pyproject.toml: the repository keeps flows/, tasks/ and blocks/ at the top level
(where a Prefect project has them), but installs them inside provenflow, as provenflow.flows,
provenflow.tasks and provenflow.blocks, never as top-level packages: those names are the user's own
project's. (A source checkout finds them the same way through provenflow/__init__.py.)"""

from setuptools import find_namespace_packages, setup

MOUNTED = {f"provenflow.{name}": name for name in ("flows", "tasks", "blocks")}

setup(
    packages=find_namespace_packages(include=["provenflow", "provenflow.*"]) + list(MOUNTED),
    package_dir=MOUNTED,
)
