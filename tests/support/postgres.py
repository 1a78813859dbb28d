"""A real PostgreSQL server for tests, from Debian's packages (``apt-get install postgresql``;
.ci/run installs it when absent): ``initdb`` and ``pg_ctl`` in a temporary folder, listening
only on a Unix socket in that folder, with trust authentication (nothing else can reach it).

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the
``postgres`` user the package creates (or ``nobody``), in a folder that user owns, outside
pytest's tmp folder (which is private to root). Clients connect as the database superuser
``postgres`` through the socket.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path


def bin_dir() -> Path | None:
    """The newest installed server's programs (``/usr/lib/postgresql/<version>/bin``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    def __init__(self, port: int = 5432) -> None:
        programs = bin_dir()
        if programs is None:
            raise FileNotFoundError("PostgreSQL's server programs are not installed (apt-get install postgresql)")
        self.bin = programs
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="pose-pg-"))
        self.data = self.folder / "data"
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse root
            self.user = next((name for name in ("postgres", "nobody") if _user_exists(name)), None)
            account = pwd.getpwnam(self.user or "nobody")
            os.chown(self.folder, account.pw_uid, account.pw_gid)

    def _run(self, *args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, user=self.user, cwd=self.folder, timeout=120)

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "--encoding=UTF8", "--no-sync")
        options = f"-k {self.folder} -p {self.port} -c listen_addresses='' -c fsync=off -c max_connections=200"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.folder} port={self.port} user=postgres dbname={dbname}"

    def new_database(self) -> str:
        """A fresh, empty database; its connection string."""
        import psycopg

        name = f"pose_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
