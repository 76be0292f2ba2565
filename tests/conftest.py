"""Fixtures that run the real server (`joyn-scim serve`) as a process on 127.0.0.1."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE_PATH = "/scim/v2"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
JOYN = "urn:ietf:params:scim:schemas:extension:joynfsm:2.0:User"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float = 15.0, interval: float = 0.02, what: str = "") -> None:
    """Poll `condition` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(interval)


class ServerProcess:
    """One `joyn-scim serve` process with its own data folder and token file(s)."""

    def __init__(self, workdir: Path, token_files: list[Path] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.token_files = token_files
        self.extra_args = extra_args or []
        self.log_path = workdir / "server.log"
        self.out_path = workdir / "server.out"
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + BASE_PATH

    def start(self, ready: bool = True) -> ServerProcess:
        """Start, and wait until it answers (and, with `ready`, has its database open)."""
        self.port = free_port()
        args = [sys.executable, "-m", "scim_server", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir), *self.extra_args]
        for f in self.token_files or []:
            args += ["--token-file", str(f)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOYN_SCIM_")}
        self.proc = subprocess.Popen(args, cwd=self.workdir, env=env,
                                     stdout=open(self.out_path, "ab"),
                                     stderr=open(self.log_path, "ab"))
        wait_until(lambda: self._healthy(ready),
                   what=f"server on port {self.port} (log: {self.log_path})")
        return self

    def _healthy(self, ready: bool = True) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"server exited with {self.proc.returncode}: "
                                 f"{self.log_path.read_text()[-2000:]}")
        try:
            if httpx.get(self.root + "/healthz", timeout=1).status_code != 200:
                return False
            if not ready:
                return True
            # Up is not enough: a PostgreSQL server opens its database after it starts.
            ready = httpx.get(self.root + "/readyz", timeout=1).json()
            return not any(p.startswith("database") for p in ready["problems"])
        except httpx.TransportError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        return self.proc.returncode if self.proc else 0

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


def write_token(path: Path, token: str | None = None) -> str:
    token = token or secrets.token_urlsafe(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(token + "\n")
    os.replace(tmp, path)  # atomic, as a Secret volume update is
    return token


def scim_client(server: ServerProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"Authorization": f"Bearer {token}",
                                 "Content-Type": "application/scim+json"})


def own_server(tmp_path_factory, name: str, extra_args: list[str] | None = None) -> ServerProcess:
    """A started server of a test module's own, with one generated token (`.token`)."""
    workdir = tmp_path_factory.mktemp(name)
    token = write_token(workdir / "token")
    srv = ServerProcess(workdir, [workdir / "token"], extra_args).start()
    srv.token = token
    return srv


# The backends an HTTP suite that matters to Entra runs on, each in turn (`db_args`).
SERVER_BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="module", params=SERVER_BACKENDS)
def db_args(request) -> list[str]:
    """`serve` arguments for a server on each backend in turn: none for SQLite (its file in the
    data folder), `--db` naming a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return []
    pg = request.getfixturevalue("postgres")
    return ["--db", pg.new_database(f"srv_{secrets.token_hex(6)}")]


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = own_server(tmp_path_factory, "server")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def client(server) -> Iterator[httpx.Client]:
    with scim_client(server, server.token) as c:
        yield c


@pytest.fixture
def make_server(tmp_path) -> Iterator:
    """Start extra servers for tests that restart, kill or reconfigure one."""
    started: list[ServerProcess] = []

    def make(token_files=None, extra_args=None, workdir=None) -> ServerProcess:
        srv = ServerProcess(workdir or tmp_path, token_files, extra_args)
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop(signal.SIGKILL)


def unique(prefix: str = "u") -> str:
    return f"{prefix}-{secrets.token_hex(6)}"


def new_user(client: httpx.Client, **fields) -> dict:
    body = {"schemas": [USER], "userName": unique("user") + "@example.com", **fields}
    r = client.post("/Users", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def new_group(client: httpx.Client, **fields) -> dict:
    body = {"schemas": [GROUP], "displayName": unique("group"), **fields}
    r = client.post("/Groups", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def patch(client: httpx.Client, path: str, *ops: dict, **kw) -> httpx.Response:
    return client.patch(path, json={"schemas": [PATCH_OP], "Operations": list(ops)}, **kw)


def built(folder: str, env: str, what: str) -> Path:
    """The folder hack/<folder>/build.sh builds into; fails under CI, else skips, if absent."""
    sys.path.insert(0, str(ROOT / "hack" / "kube"))
    from controlplane import binaries_dir
    bins = binaries_dir(script=ROOT / "hack" / folder / "build.sh", env=env)
    if bins is None:
        message = f"{what} not built: run `make kube-bins`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bins


def kube_version() -> str:
    """The pinned Kubernetes release (hack/kube/go.mod), e.g. v1.36.3."""
    text = (ROOT / "hack" / "kube" / "go.mod").read_text()
    return re.search(r"k8s.io/kubernetes (v[0-9.]+)", text).group(1)


def postgres_bins() -> Path:
    """Where initdb and pg_ctl are; fails under CI, else skips saying how to get them."""
    from pgserver import bin_dir
    bins = bin_dir()
    if bins is None:
        message = ("PostgreSQL is not installed: `apt-get install postgresql` (make test does), "
                   "or set POSTGRES_BIN_DIR to a folder holding initdb and pg_ctl")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return bins


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session (tests/pgserver.py); skipped, with where to get it,
    where Debian's `postgresql` is not installed and CI is not set."""
    from pgserver import PostgresServer
    srv = PostgresServer(postgres_bins()).start()
    yield srv
    srv.stop()
