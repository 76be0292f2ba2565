"""A throw-away PostgreSQL cluster for the benchmarks, made as tests/pgserver.py makes the tests'
(initdb and pg_ctl as the `postgres` user when run as root, in a temporary folder, on a free
loopback port), but durable as a production one: fsync, full_page_writes and synchronous_commit
left at their defaults (on), so a commit is acknowledged after its WAL is flushed to the disk.

Not tests/pgserver.py itself: that one turns fsync and synchronous_commit off for speed, which is
right for tests and wrong for a measurement, and it lives in the tests' import path.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def bin_dir() -> Path:
    """Where initdb and pg_ctl are: $POSTGRES_BIN_DIR, else the newest Debian PostgreSQL."""
    if os.environ.get("POSTGRES_BIN_DIR"):
        return Path(os.environ["POSTGRES_BIN_DIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL cluster; `with Cluster() as pg:` starts it and removes it afterwards.
    pg_stat_statements is loaded, so a benchmark can count the statements a request makes."""

    def __init__(self) -> None:
        self.bins = bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="pg.", dir="/tmp"))  # short: a socket path
        self.data = self.root / "data"
        self.port = free_port()
        self.as_user = os.geteuid() == 0  # initdb and postgres refuse to run as root

    def _run(self, *args: str) -> None:
        kw = {"user": "postgres", "group": "postgres"} if self.as_user else {}
        subprocess.run([str(self.bins / args[0]), *args[1:]], check=True, cwd=self.root,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)

    def __enter__(self) -> Cluster:
        if self.as_user:
            shutil.chown(self.root, "postgres", "postgres")
        # --no-sync: only initdb's own flush of the new files; the server itself runs durable.
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        options = (f"-k {self.root} -p {self.port} -c listen_addresses=127.0.0.1 "
                   "-c shared_preload_libraries=pg_stat_statements "
                   "-c pg_stat_statements.track=top -c max_connections=300")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
                  "-o", options, "start")
        self.execute("CREATE EXTENSION pg_stat_statements")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, params: tuple = (), database: str = "postgres") -> list:
        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def tenant_database(self, name: str) -> str:
        """A database owned by a login role of the same name, as a tenant's is (not a
        superuser's); its URI."""
        self.execute(f'CREATE ROLE "{name}" LOGIN')
        self.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        return self.dsn(name, name)

    def settings(self) -> dict[str, str]:
        names = ("server_version", "fsync", "synchronous_commit", "full_page_writes",
                 "wal_sync_method", "shared_buffers", "wal_level")
        rows = self.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s)",
                            (list(names),))
        return {n: s + (f" x {u}" if u else "") for n, s, u in rows}

    def statements(self, database: str) -> list[tuple[str, int]]:
        """pg_stat_statements' (query, calls) in `database` since the last reset, most first."""
        return [(q, int(c)) for q, c in self.execute(
            "SELECT query, calls FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = %s ORDER BY calls DESC", (database,))]

    def reset_statements(self) -> None:
        self.execute("SELECT pg_stat_statements_reset()")

    def pids(self) -> list[int]:
        """The postmaster's and its children's (backends, WAL writer, checkpointer...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
            except (OSError, ValueError, IndexError):
                pass  # gone meanwhile
        return [postmaster, *children]

    def disk_bytes(self) -> int:
        """The cluster folder's size on disk (what du counts)."""
        out = subprocess.run(["du", "-sB1", str(self.data)], capture_output=True, text=True,
                             check=True).stdout
        return int(out.split()[0])


def cpu_seconds(pids: list[int]) -> float:
    """The user + system CPU time these processes have used (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")
