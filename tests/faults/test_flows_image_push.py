"""A flows image whose push fails is not recorded: one `Error:` line, the run failed, no flows_images row,
so `pools create` never points the Kubernetes pool at an image the registry does not have."""

from __future__ import annotations

import os
import subprocess

import pytest

from provenflow.deploy.release import DEFAULT_BASE_IMAGE
from tests import services
from tests.conftest import REPO
from tests.services import CLI

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.mark.timeout(2400)  # on a fresh Docker engine the build installs ~300 MB of wheels first
def test_a_failed_push_leaves_no_flows_image_record(project):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from provenflow.ledger import models as m
    from provenflow.workspace import Workspace

    class Broken(BaseHTTPRequestHandler):  # listens, so release's check passes; refuses every push
        def do_GET(self) -> None:
            self.send_error(500)

        do_HEAD = do_POST = do_PUT = do_PATCH = do_GET

        def log_message(self, *args) -> None:
            pass

    services.ensure_base_image(services.docker_engine(), DEFAULT_BASE_IMAGE, REPO)
    broken = ThreadingHTTPServer(("127.0.0.1", services.free_port()), Broken)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    down = f"127.0.0.1:{broken.server_address[1]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVENFLOW_")}
    try:
        result = subprocess.run([CLI, "release", "--flows", "--registry", down], cwd=project,
                                capture_output=True, text=True, env=env, timeout=2300)  # fmt: skip
    finally:
        broken.shutdown()
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: pushing {down}/provenflow/flows:"), result.stderr
    with Workspace.default().ledger.reader() as session:
        assert session.query(m.FlowsImage).count() == 0
        (run,) = session.query(m.Run).filter_by(flow="build-flows-image").all()
        assert run.state == "failed" and down in run.error
