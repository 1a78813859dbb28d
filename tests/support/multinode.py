"""A Ray cluster of several nodes on one machine, started as a real one is: ``ray start
--head`` and ``ray start --address`` per worker node, each node its own raylet with its own
resources; the service deployed on it from this process, as a driver. Used by
tests/serve/test_multinode.py and bench/chaos.py.

Placement: the head node has the custom resource ``head``, each worker node ``tracker``;
Ingress, Decode and Aggregation ask for a little ``head``, Tracking for one ``tracker`` (and
half a fake GPU), so the tracking replicas run on the worker nodes only. The Serve proxy runs
on the head only (one port on one machine).

Every process of the cluster has the cluster's own temporary folder in its command line
(``--temp-dir``, a fresh one per cluster): ``stop`` ends those processes, and only those, so
that other clusters on the machine (other test runs) are left alone. ``ray stop`` would end
them all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .serve import CLUSTER_ENV, QUICK_STOP, free_port

#: Node failure is noticed by the GCS's health checks of each raylet: every second, dead after
#: 3 missed (the default, 5 missed checks 3 s apart, takes 15 s). Inherited by every process.
NODE_ENV = {**CLUSTER_ENV, "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3", "RAY_health_check_timeout_ms": "1000",
            "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5", "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000"}
RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class Node:
    name: str
    resources: dict[str, float]
    node_manager_port: int
    node_id: str = ""

    def raylet(self) -> psutil.Process | None:
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.info["name"] == "raylet" and f"--node_manager_port={self.node_manager_port}" in cmdline:
                return proc
        return None


class MultiNodeCluster:
    def __init__(self, head_cpus: float = 2) -> None:
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rmn-", dir="/tmp"))  # short: Unix socket paths
        self.gcs_port = free_port()
        self.http_port = free_port()
        self.head_cpus = head_cpus
        self.nodes: list[Node] = []
        self.env = {**os.environ, **NODE_ENV}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def _start(self, name: str, resources: dict[str, float], *args: str) -> Node:
        node = Node(name, resources, free_port())
        command = [RAY, "start", *args, f"--resources={json.dumps(resources)}",
                   f"--node-manager-port={node.node_manager_port}", f"--object-manager-port={free_port()}",
                   f"--metrics-export-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                   f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                   "--object-store-memory=300000000", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
        subprocess.run(command, check=True, capture_output=True, env=self.env, timeout=120)
        self.nodes.append(node)
        return node

    def start(self) -> MultiNodeCluster:
        self._start("head", {"head": 100}, "--head", f"--port={self.gcs_port}", f"--temp-dir={self.temp_dir}",
                    f"--num-cpus={self.head_cpus}", "--num-gpus=0", "--include-dashboard=false",
                    f"--ray-client-server-port={free_port()}")
        import ray

        os.environ.update(NODE_ENV)  # the driver's own processes, too
        ray.init(address=self.address, logging_level="ERROR", log_to_driver=False)
        self.nodes[0].node_id = ray.get_runtime_context().get_node_id()
        return self

    def add_worker(self, name: str, cpus: float = 1, gpus: float = 1) -> Node:
        """A worker node with ``tracker`` slots for two tracking replicas."""
        node = self._start(name, {"tracker": 2}, f"--address={self.address}", f"--num-cpus={cpus}",
                           f"--num-gpus={gpus}")
        import ray

        deadline = time.monotonic() + 60
        while not node.node_id:
            for info in ray.nodes():
                if info["Alive"] and info["NodeManagerPort"] == node.node_manager_port:
                    node.node_id = info["NodeID"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {name} did not join")
            time.sleep(0.2)
        return node

    def kill_raylet(self, node: Node) -> None:
        """SIGKILL the node's raylet, as when its machine dies: its workers exit with it."""
        raylet = node.raylet()
        assert raylet is not None, f"no raylet for node {node.name}"
        raylet.send_signal(signal.SIGKILL)
        raylet.wait(10)

    def deploy(self, settings: dict[str, Any], deployments: dict[str, dict[str, Any]] | None = None) -> str:
        from ray import serve

        from deployments.app import compose

        head = {"num_cpus": 0.05, "resources": {"head": 0.01}}
        options = {"Ingress": {"ray_actor_options": head}, "Decode": {"ray_actor_options": head},
                   "Aggregation": {"ray_actor_options": head},
                   "Tracking": {"num_replicas": 2,
                                "ray_actor_options": {"num_cpus": 0.05, "num_gpus": 0.5, "resources": {"tracker": 1}}}}
        for name, extra in (deployments or {}).items():
            options[name] = {**options.get(name, {}), **extra}
        options = {name: {"logging_config": {"encoding": "JSON"}, **QUICK_STOP, **value}
                   for name, value in options.items()}
        serve.start(http_options={"host": "127.0.0.1", "port": self.http_port}, proxy_location="HeadOnly")
        serve.run(compose({"settings": {"engine": {"name": "motion"}, **settings}}, options), name="pose",
                  route_prefix="/", blocking=False)
        return f"http://127.0.0.1:{self.http_port}"

    def log_lines(self, job_id: str, text: str) -> list[str]:
        """The messages of the service's log lines (every node's) about ``job_id`` that hold ``text``."""
        found = []
        for path in sorted(self.temp_dir.glob("session_*/logs/**/*")):
            if not path.is_file() or path.suffix not in (".log", ".err", ".out"):
                continue
            for line in path.read_text(errors="replace").splitlines():
                if job_id in line and text in line:
                    try:
                        found.append(json.loads(line).get("message", line))
                    except ValueError:
                        found.append(line)
        return found

    def node_of(self, pid: int) -> Node | None:
        """The node whose raylet started process ``pid`` (a worker's parent is its raylet)."""
        try:
            parent = psutil.Process(pid).parent()
        except psutil.NoSuchProcess:
            return None
        for node in self.nodes:
            raylet = node.raylet()
            if raylet is not None and parent is not None and raylet.pid == parent.pid:
                return node
        return None

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster (its temporary folder is in their command lines),
        and the workers of its raylets."""
        mine: dict[int, psutil.Process] = {}
        marker = str(self.temp_dir)
        for proc in psutil.process_iter(["cmdline"]):
            if any(marker in part for part in proc.info["cmdline"] or []):
                mine[proc.pid] = proc
        for proc in list(mine.values()):
            try:
                for child in proc.children(recursive=True):
                    mine[child.pid] = child
            except psutil.NoSuchProcess:
                pass
        mine.pop(os.getpid(), None)
        return list(mine.values())

    def replicas(self, deployment: str, app: str = "pose") -> list[psutil.Process]:
        """The processes of ``deployment``'s replicas on this cluster (not on other clusters
        of the machine)."""
        title = f"ServeReplica:{app}:{deployment}"
        found = []
        for proc in self.processes():
            try:
                if any(title in part for part in proc.cmdline()):
                    found.append(proc)
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self) -> None:
        import ray

        try:
            from ray import serve

            serve.shutdown()
        except Exception:  # a cluster already half gone: its processes are ended below
            pass
        ray.shutdown()
        victims = self.processes()
        for proc in victims:
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(victims, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        for key in NODE_ENV:
            os.environ.pop(key, None)
