"""Fixtures of every test module: a clean environment per test, the helpers of tests/support
(``media``, ``contract``, ``demo``, ``api``, ``serve_tools``), local Ray clusters
(``ray_clusters``, ``shared_cluster``) and the API in this process (``local_api``).

Folders by what a test needs: ``unit/`` (the library's parts), ``api/`` (the HTTP API in this
process, the viewer in a browser), ``engines/`` (each engine; phalp's against upstream), ``serve/``
(local Ray clusters), ``gpu/`` (CUDA). Speed: ``python -m pytest -m "not slow"`` is the fast
tier (a developer's loop, under a minute); ``slow`` marks tests of a second or more and
everything that starts a Ray cluster (``serve``).

Two workers run the suite (``-n 2`` in pyproject.toml). Each module runs whole in one worker,
so that its module fixtures start once, and the modules that start Ray clusters
(tests/serve/, every ``serve`` test) run one after another in one worker, the first work
it is given, while the other runs the rest: two clusters at once slowed each other's start-up
and restarts up to threefold on two cores (measured), and would share the node memory
test_node_oom's threshold is computed from. The cluster modules run in the order of
``CLUSTER_ORDER``: those on the shared cluster first, then those that stop it for their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from starlette.testclient import TestClient

from pose_pipeline.api.app import create_app
from pose_pipeline.config import ENV_PREFIX, Settings
from pose_pipeline.api.service import JobService
from pose_pipeline.jobs.stages import LocalStages

import support.api
import support.contract
import support.media
import support.videos

#: Variables a test must not inherit from the shell that runs pytest: every setting the
#: service reads, and the client's defaults.
_INHERITED = (ENV_PREFIX,)


#: The modules that start Ray clusters are those of tests/serve/ (every ``serve`` test is
#: there); they run in this order: those on the ``shared_cluster`` first, then those with
#: clusters of their own. test_metrics first of all, on a fresh cluster: after test_faults'
#: kills, once in four runs the metrics agent had not exported its ingress's series 60 s after
#: its jobs (seen in CI).
CLUSTER_FOLDER = "tests/serve/"
CLUSTER_ORDER = ("test_metrics", "test_faults", "test_service", "test_multinode", "test_node_oom", "test_serve_cli")
CLUSTERS_SCOPE = "ray-clusters"


def _scope(nodeid: str) -> str:
    """What one worker runs whole: all the cluster modules together, else one module."""
    module = nodeid.split("::")[0]
    return CLUSTERS_SCOPE if module.startswith(CLUSTER_FOLDER) else module


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ClusterModulesInOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # The longest unit first, whatever its number of tests (xdist orders by that).
            if CLUSTERS_SCOPE in self.workqueue:
                self.workqueue.move_to_end(CLUSTERS_SCOPE, last=False)
            super()._assign_work_unit(node)

    return ClusterModulesInOneWorker(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The cluster modules last, in the order of ``CLUSTER_ORDER``; a serve test outside
    tests/serve/ would run beside them: refused."""
    strays = [item.nodeid for item in items
              if item.get_closest_marker("serve") and _scope(item.nodeid) != CLUSTERS_SCOPE]
    if strays:
        raise pytest.UsageError(f"serve tests outside {CLUSTER_FOLDER}: {strays}")
    rank = {f"{CLUSTER_FOLDER}{name}.py": i for i, name in enumerate(CLUSTER_ORDER, start=1)}
    last = len(rank) + 1  # a cluster module not in the order: after the others
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], last if _scope(item.nodeid) == CLUSTERS_SCOPE
                                         else 0))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def clean_environ() -> Iterator[None]:
    """Each test starts without ``POSE_PIPELINE_*`` variables and leaves the environment as
    it found it (as httpx's test suite does), whatever it sets."""
    original = os.environ.copy()
    for key in [k for k in os.environ if k.startswith(_INHERITED)]:
        del os.environ[key]
    yield
    os.environ.clear()
    os.environ.update(original)


@pytest.fixture(scope="session")
def media() -> ModuleType:
    """Test videos written with PyAV, and ways to damage them (tests/support/media.py)."""
    return support.media


@pytest.fixture(scope="session")
def contract() -> ModuleType:
    """``collect(outputs, holdback_frames)``: an engine's chunk outputs as per-frame people,
    checking every correction's reach (tests/support/contract.py)."""
    return support.contract


@pytest.fixture(scope="session")
def demo() -> ModuleType:
    """Demo videos of people walking, small settings, the offline pipeline's result
    (tests/support/videos.py)."""
    return support.videos


@pytest.fixture(scope="session")
def api() -> ModuleType:
    """The API over any ``httpx.Client`` (submit, wait for a job, poll) and the offline
    result to compare with (tests/support/api.py; no Ray)."""
    return support.api


@pytest.fixture(scope="session")
def serve_tools() -> ModuleType:
    """The service on a local Ray cluster: ``ServeCluster`` and the HTTP helpers
    (tests/support/serve.py; imported here, so that tests without Ray never import it)."""
    import support.serve

    return support.serve


@pytest.fixture(scope="session")
def ray_clusters(serve_tools: ModuleType) -> Iterator[Any]:
    """This process's Ray clusters, one at a time (``support.serve.Clusters``): a module that
    starts a cluster of its own calls ``ray_clusters.own(...)`` or ``close()`` first."""
    clusters = serve_tools.Clusters()
    yield clusters
    clusters.close()


@pytest.fixture(scope="module")
def shared_cluster(ray_clusters: Any) -> Iterator[Any]:
    """The local Ray cluster (one node, one fake GPU) that modules share in turn
    (``support.serve.ServeCluster``): the applications the module deploys on it are deleted
    after the module, so each module names its own and may route at ``/``."""
    cluster = ray_clusters.shared()
    yield cluster
    cluster.delete(list(cluster.apps))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server for this session (tests/support/postgres.py), from Debian's
    packages; ``new_database()`` gives each user a database of its own. Skipped where the
    server is not installed, except in CI (``CI`` set), which installs it: there its absence
    is a failure."""
    import support.postgres

    if support.postgres.bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed; .ci/run installs it (apt-get install postgresql)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = support.postgres.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def local_api() -> Iterator[Callable[..., TestClient]]:
    """``local_api(settings, **client_options)``: the HTTP API in this process, with real
    local stages (PyAV decoding, the engine, the aggregation) on the store of ``settings``
    (a ``Settings`` mapping; the engine is motion unless it names one), as a Starlette
    ``TestClient`` whose lifespan runs until the end of the module."""
    clients: list[TestClient] = []

    def start(settings: dict[str, Any], **client_options: Any) -> TestClient:
        configured = Settings.from_dict({"engine": {"name": "motion"}, **settings})
        service = JobService(configured, LocalStages.from_settings(configured), owner=f"local-{len(clients)}")
        client = TestClient(create_app(service), **client_options)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def launch_browser() -> Iterator[Any]:
    """Headless Chromium from the system's packages (``/usr/bin/chromium``) under Playwright
    (tests/support/browser.py); the tests that use it are skipped where either is missing
    (.ci/run installs both). Playwright's sync API holds an event loop on this thread while
    it runs, so Serve's sync ``DeploymentResponse.result()`` refuses to run meanwhile."""
    import support.browser

    if not support.browser.CHROMIUM.exists():
        pytest.skip(f"{support.browser.CHROMIUM} is absent: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(support.browser.CHROMIUM),
                                              args=support.browser.ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for a module of browser tests."""
    yield from launch_browser()


@pytest.fixture
def browser_for_one_test() -> Iterator[Any]:
    """A browser for one test, in a module whose other tests call Serve handles synchronously."""
    yield from launch_browser()
