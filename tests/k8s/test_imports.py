"""The deploy core stays free of Prefect, and of the Kubernetes client until it is used."""

import subprocess
import sys


def test_deploy_core_imports_neither_prefect_nor_the_kubernetes_client():
    code = "import sys, provenflow.deploy.kubernetes; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(out.split())
    assert not [m for m in ("prefect", "kubernetes", "kubernetes_validate") if m in loaded]
