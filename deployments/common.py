"""What every deployment shares: its settings, the job store and the log."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pose_pipeline.config import Settings
from pose_pipeline.jobs import store
from pose_pipeline.jobs.store import JobStore

# Serve writes this logger to the replica's log file (JSON with serve_config.yaml's
# logging_config), with ``extra`` fields such as job_id and code as top-level keys.
log = logging.getLogger("ray.serve")


def settings_from_args(args: Mapping[str, Any] | None) -> Settings:
    """The application's settings: ``args.settings`` of the Serve application, in the one
    precedence of ``Settings.load`` (defaults, ``$POSE_PIPELINE_CONFIG``, these, then the
    ``POSE_PIPELINE_<SECTION>__<FIELD>`` variables)."""
    return Settings.load(app=(args or {}).get("settings"))


def open_store(settings: Settings) -> JobStore:
    return store.open_store(settings.store)
