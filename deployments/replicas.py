"""What each replica records about itself, for ``/readyz`` to read without asking it.

A Tracking replica serves one request at a time (``max_ongoing_requests: 1``): a readiness
check sent through Serve's request queue waits behind the chunks being tracked, and a busy,
healthy service would look unready. So each replica writes a report when its engine has
loaded or failed to (and why), and again at each of Serve's health checks, which do not go
through the queue; the ingress reads the reports from the store's volume, which every node
mounts, and combines them with Serve's own status of the application.

One JSON file per replica under ``<store.root>/replicas/``, written whole (write, rename).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pose_pipeline.files import write_atomically

#: A report older than this is of a replica that stopped reporting (dead, or its node lost).
FRESH_S = 60.0
#: Reports older than this are removed when the reports are read.
FORGET_S = 3600.0
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


class ReplicaReport(BaseModel):
    """One replica's state: its engine loaded (``engine``: its description) or not
    (``error``: the error's JSON body, e.g. ``engine_unavailable`` naming missing files)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployment: str
    replica: str
    ready: bool
    engine: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pid: int
    updated_at: float


class ReplicaBoard:
    """The reports of the replicas of one application, in ``<root>/replicas/``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.folder = Path(root).expanduser() / "replicas"
        self.folder.mkdir(parents=True, exist_ok=True)

    def record(self, report: ReplicaReport) -> None:
        path = self._path(report.deployment, report.replica)
        write_atomically(path, report.model_dump_json())

    def reports(self, deployment: str, now: float | None = None, fresh_s: float = FRESH_S) -> list[ReplicaReport]:
        """The fresh reports of ``deployment``'s replicas, newest first."""
        now = time.time() if now is None else now
        found = []
        for path in self.folder.glob(f"{deployment}-*.json"):
            try:
                report = ReplicaReport.model_validate(json.loads(path.read_text()))
            except (OSError, ValueError):  # removed meanwhile, or not ours
                continue
            if now - report.updated_at > FORGET_S:
                path.unlink(missing_ok=True)
            elif now - report.updated_at <= fresh_s:
                found.append(report)
        return sorted(found, key=lambda r: r.updated_at, reverse=True)

    def _path(self, deployment: str, replica: str) -> Path:
        if not (_NAME.fullmatch(deployment) and _NAME.fullmatch(replica)):
            raise ValueError(f"not a deployment or replica name: {deployment!r}, {replica!r}")
        return self.folder / f"{deployment}-{replica}.json"
