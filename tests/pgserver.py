"""A real PostgreSQL server for the tests: Debian's `postgresql` package (installed by
`make test`), started in a temporary folder, listening on a Unix socket in that folder and on a
free loopback port, and stopped (immediately: nothing in it is worth a checkpoint) at the end.

initdb and postgres refuse to run as root, and CI runs as root: they run as the `postgres`
user then (the package makes it), in a folder that user owns.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from conftest import free_port


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: $POSTGRES_BIN_DIR, else the newest Debian PostgreSQL."""
    if os.environ.get("POSTGRES_BIN_DIR"):
        return Path(os.environ["POSTGRES_BIN_DIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """One PostgreSQL cluster of a test session; `database_for(key)` makes a database."""

    def __init__(self, bins: Path, crash_safe: bool = False, passwords: bool = False) -> None:
        self.bins = bins
        # TCP logins need a password (SCRAM), as on a real cluster; the tests' own statements
        # (execute) use the Unix socket, where `postgres` is trusted.
        self.host_auth = "scram-sha-256" if passwords else "trust"
        # Off, a commit is acknowledged before its WAL is written: quicker, and lost when the
        # server is killed (halt()) within the next 200 ms. Tests that kill it want it on.
        self.synchronous_commit = "on" if crash_safe else "off"
        # A short path: a Unix socket's name may hold ~100 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="pg.", dir="/tmp"))
        self.data = self.root / "data"
        self.port = 0
        self.as_user = os.geteuid() == 0
        self.databases: set[str] = set()

    def _run(self, *args: str) -> None:
        kw = {"user": "postgres", "group": "postgres"} if self.as_user else {}
        subprocess.run([str(self.bins / args[0]), *args[1:]], check=True, cwd=self.root,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)

    def start(self) -> PostgresServer:
        """Make the cluster (the first time) and start it."""
        if not self.data.exists():
            if self.as_user:
                shutil.chown(self.root, "postgres", "postgres")
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                      f"--auth-host={self.host_auth}", "-E", "UTF8", "--locale=C.UTF-8",
                      "--no-sync")
            self.port = free_port()
        # fsync off: a test database need not survive a power loss (a killed server's writes
        # are in the kernel's page cache, which replay finds).
        options = (f"-F -k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c synchronous_commit={self.synchronous_commit} -c full_page_writes=off "
                   "-c max_connections=300 -c shared_buffers=128MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", options, "start")
        return self

    def halt(self) -> None:
        """Stop the server at once (as a crash or a lost node would), keeping its data."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # not running

    def stop(self) -> None:
        if self.data.exists():
            self.halt()
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres", user: str = "postgres",
            password: str | None = None) -> str:
        auth = user + (f":{password}" if password else "")
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, params: tuple = (), database: str = "postgres") -> list:
        with psycopg.connect(dbname=database, user="postgres", host=str(self.root),
                             port=self.port, autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def new_database(self, name: str) -> str:
        """An empty database named `name` (made once), its URI."""
        if name not in self.databases:
            self.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
            self.databases.add(name)
        return self.dsn(name)

    def database_for(self, key: object) -> str:
        """The database of `key` (a test's folder): the same one each time it is asked for."""
        return self.new_database("t_" + hashlib.sha1(str(key).encode()).hexdigest()[:20])
