"""The job store with its records in PostgreSQL: several ingress replicas (on several nodes)
share records, leases and attempts through one server, with the row locking of a real
database rather than SQLite's file locks over a network filesystem. The files (uploads,
checkpoints, results) stay on the volume every node mounts, as in ``LocalJobStore``.

It is ``LocalJobStore`` with another connection: every record query there is portable SQL,
so only the connection and the schema differ. Each store lends at most ``POOL_SIZE``
connections, one per operation, whatever the number of threads that call it; one that breaks
(the server restarted, the network dropped) is dropped, the next operation opens another,
and the operation that met the break fails with ``store_unavailable`` (503).

Needs psycopg 3 (``pip install 'pose-pipeline[postgres]'``).
"""

from __future__ import annotations

import os
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, cast

from ...errors import InvalidOption, StoreUnavailable
from .base import _COLUMNS, _JSON_FIELDS, DuplicateKey, JobRecord, SqlConnection
from .sqlite import LocalJobStore

try:
    import psycopg
except ImportError:  # the optional extra is not installed
    psycopg = None  # type: ignore[assignment]

#: Column types: JSON fields are text (the same encoding as in SQLite), numbers and flags typed.
_SQL_TYPES = {"bool": "BOOLEAN", "float": "DOUBLE PRECISION", "int": "BIGINT"}
#: Serialises schema changes between replicas that start together (any constant key).
_SCHEMA_LOCK = 7_311_502
#: The file in ``root`` that names the database whose jobs keep their files there.
VOLUME_MARKER = ".store-volume"
#: Connections per store (a process has two or three stores), and how long an operation waits
#: for one when all are busy.
POOL_SIZE = 4
POOL_WAIT_S = 30.0


def _column_type(name: str, annotation: str) -> str:
    if name in _JSON_FIELDS:
        return "TEXT"
    base = annotation.replace(" | None", "").strip()
    return _SQL_TYPES.get(base, "TEXT")


class _Row(tuple):
    """A row readable by position and by name, as ``sqlite3.Row`` is (``dict(row)`` too)."""

    names: Sequence[str] = ()

    def keys(self) -> Sequence[str]:
        return self.names

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self.names.index(key))
        return tuple.__getitem__(self, key)


def _row_factory(cursor: Any) -> Any:
    names = tuple(column.name for column in cursor.description or ())
    row_type = type("Row", (_Row,), {"names": names})
    return lambda values: row_type(values)


class _Connection:
    """A psycopg connection with sqlite3's calling convention (``?`` placeholders, rows by
    name or position). A broken connection raises ``StoreUnavailable`` and is marked so that
    the pool drops it."""

    row_factory: Any = None  # set by the queries for sqlite3; rows here always have names

    def __init__(self, raw: Any) -> None:
        self.raw, self.broken = raw, False

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        assert psycopg is not None
        try:
            return self.raw.execute(sql.replace("?", "%s"), list(parameters))
        except psycopg.errors.UniqueViolation:
            raise DuplicateKey(str(parameters[:1])) from None
        except psycopg.OperationalError as exc:
            self.broken = True
            raise StoreUnavailable(f"the job store's database cannot be reached: {str(exc).strip()[:300]}") from None


class _Pool:
    """At most ``size`` connections, lent one operation at a time. Bounded whatever the number
    of threads that use the store (a replica's worker threads come and go), so that the
    server's ``max_connections`` is shared out by process, not by thread."""

    def __init__(self, database: str, size: int) -> None:
        self.database, self.size = database, size
        self.idle: list[Any] = []
        self.opened = 0
        self.ready = threading.Condition()

    def take(self) -> Any:
        with self.ready:
            while True:
                while self.idle:
                    raw = self.idle.pop()
                    if not raw.closed:
                        return raw
                    self.opened -= 1
                if self.opened < self.size:
                    self.opened += 1
                    break
                if not self.ready.wait(POOL_WAIT_S):
                    raise StoreUnavailable(f"all {self.size} connections to the job store's database stayed busy "
                                           f"for {POOL_WAIT_S:.0f} s")
        try:
            return _open(self.database)
        except BaseException:
            self.give(None)
            raise

    def give(self, raw: Any, broken: bool = False) -> None:
        with self.ready:
            if raw is None or broken or raw.closed:
                if raw is not None:
                    raw.close()
                self.opened -= 1
            else:
                self.idle.append(raw)
            self.ready.notify()

    def close(self) -> None:
        with self.ready:
            while self.idle:
                self.idle.pop().close()
                self.opened -= 1


def _open(database: str) -> Any:
    assert psycopg is not None
    try:
        return psycopg.connect(database, autocommit=True, row_factory=_row_factory, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"the job store's database cannot be reached: {str(exc).strip()[:300]}") from None


class PostgresJobStore(LocalJobStore):
    """Records in PostgreSQL at ``database`` (a libpq connection string), files under ``root``."""

    def __init__(self, root: str | os.PathLike, database: str) -> None:
        if psycopg is None:
            raise StoreUnavailable("store.database is set but psycopg is not installed: "
                                   "pip install 'pose-pipeline[postgres]'")
        self.database = database
        self._pool = _Pool(database, POOL_SIZE)
        # Idle connections are closed with the store (an unclosed connection warns when collected).
        self._finalizer = weakref.finalize(self, self._pool.close)
        super().__init__(root)

    def _init_records(self) -> None:
        types = {f.name: str(f.type) for f in fields(JobRecord)}
        columns = ", ".join(f"{name} {_column_type(name, types[name])}" for name in _COLUMNS)
        with self._connect() as db, cast(_Connection, db).raw.transaction():
            db.execute(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})")
            db.execute(f"CREATE TABLE IF NOT EXISTS jobs ({columns}, PRIMARY KEY (id))")
            # A store made by an older version lacks the newer fields: add them (NULL -> default).
            for name in _COLUMNS:
                db.execute(f"ALTER TABLE jobs ADD COLUMN IF NOT EXISTS {name} {_column_type(name, types[name])}")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state)")
            db.execute("CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at, id)")
            db.execute("CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (idempotency_key)")
            self._check_volume(db)

    def _check_volume(self, db: SqlConnection) -> None:
        """Refuse a ``root`` that is not the volume this database's jobs keep their files on.

        Every path the store hands out (uploads, checkpoints, results) is under ``root``; a
        replica whose ``root`` is a local folder would record jobs whose files no other replica
        can read. The first store on a database writes a token into the database and a file
        ``VOLUME_MARKER`` into its ``root``; every later one, on any node, must find the same."""
        db.execute("CREATE TABLE IF NOT EXISTS store_volume (id INTEGER PRIMARY KEY, token TEXT NOT NULL)")
        fresh = uuid.uuid4().hex
        db.execute("INSERT INTO store_volume (id, token) VALUES (1, ?) ON CONFLICT (id) DO NOTHING", (fresh,))
        token = db.execute("SELECT token FROM store_volume WHERE id = 1").fetchone()[0]
        marker = self.root / VOLUME_MARKER
        found = marker.read_text().strip() if marker.exists() else None
        if found is None and token == fresh:  # the first store on this database: this is the volume
            marker.write_text(token + "\n")
        elif found != token:
            raise InvalidOption(
                f"store.root {str(self.root)!r} is not the volume this database's jobs keep their files on "
                f"({'no' if found is None else 'another'} {VOLUME_MARKER} file there): mount the shared volume at "
                "store.root on every node (docs/operations.md, Kubernetes)", option="store.root")

    @contextmanager
    def _connect(self) -> Iterator[SqlConnection]:
        raw = self._pool.take()
        connection = _Connection(raw)
        try:
            yield connection
        finally:
            self._pool.give(raw, connection.broken)

    def close(self) -> None:
        """Close the idle connections of this store (a later operation opens a new one)."""
        self._pool.close()
