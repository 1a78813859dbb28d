"""``pose-pipeline serve`` stopped as a container is: SIGTERM, while the application is still
being deployed and once it is ready. Each case starts the command's own local Ray cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

pytestmark = [pytest.mark.serve, pytest.mark.slow]


@pytest.mark.parametrize("when", ["deploying", "ready"])
def test_serve_stops_cleanly_on_sigterm(ray_clusters, serve_tools, tmp_path, when):
    # How a container is stopped: the service must shut down as on Ctrl-C and exit 0, also while
    # the application is still being deployed (Serve's proxy answers, the app is not ready yet).
    ray_clusters.close()  # the command's cluster is the only one
    port = serve_tools.free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("POSE_PIPELINE_")}
    server = subprocess.Popen([sys.executable, "-m", "pose_pipeline.cli", "serve", "--port", str(port)],
                              env={**clean, "POSE_PIPELINE_STORE__ROOT": str(tmp_path / "store"),
                                   "POSE_PIPELINE_ENGINE__NAME": "motion"},  # loads at once
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        def reached() -> bool:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
            except httpx.HTTPError:
                return False
            return when == "deploying" or status == 200
        serve_tools.wait_until(reached, 180, 0.2, f"the service {when}")
        server.terminate()
        _, stderr = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, stderr[-2000:]
    assert "SIGTERM received" not in stderr
