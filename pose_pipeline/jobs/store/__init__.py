"""Where jobs live: their records, uploads, checkpoints and results (``open_store``).

``base``: the records and the interface; ``sqlite``: records in SQLite beside the files (one
machine, or one ingress replica); ``postgres``: records in PostgreSQL (several replicas).
"""

from __future__ import annotations

from ...config import StoreSettings
from .base import JobRecord, JobState, JobStore, SqlConnection, new_job_id
from .sqlite import LocalJobStore

__all__ = ["JobRecord", "JobState", "JobStore", "LocalJobStore", "SqlConnection", "new_job_id", "open_store"]


def open_store(settings: StoreSettings) -> JobStore:
    """The store that ``settings`` describe: records in PostgreSQL when ``store.database`` is
    set (several ingress replicas), else in SQLite beside the files; files under ``root``."""
    if settings.database:
        from .postgres import PostgresJobStore  # psycopg: the optional extra 'postgres'

        return PostgresJobStore(settings.root, settings.database)
    return LocalJobStore(settings.root)
