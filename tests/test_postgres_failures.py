"""The PostgreSQL backend when things break, over HTTP, each on a PostgreSQL server of its own
(stopped and started by the test): the database down, the server started before it, a replica
killed with SIGKILL under load. Entra must see retryable 503s, never a 500 or a hang, and no
acknowledged write may be lost."""

import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import USER, ServerProcess, postgres_bins, scim_client, wait_until, write_token
from pgserver import PostgresServer


@pytest.fixture
def own_postgres():
    srv = PostgresServer(postgres_bins(), crash_safe=True, passwords=True).start()
    yield srv
    srv.stop()


@pytest.fixture
def tenant_db(own_postgres):
    """A tenant's role with a password, and its database: the URI as an operator passes it."""
    password = "pw-" + secrets.token_urlsafe(12)
    own_postgres.execute(f"CREATE ROLE acme LOGIN PASSWORD '{password}'")
    own_postgres.execute("CREATE DATABASE acme OWNER acme")
    return own_postgres.dsn("acme", user="acme", password=password), password


def start_server(tmp_path, name, dsn, ready=True) -> ServerProcess:
    workdir = tmp_path / name
    workdir.mkdir()
    token = write_token(workdir / "token")
    srv = ServerProcess(workdir, [workdir / "token"], ["--db", dsn]).start(ready=ready)
    srv.token = token
    return srv


def body(name: str) -> dict:
    return {"schemas": [USER], "userName": name}


def test_the_database_down_is_a_retryable_503_and_the_server_recovers_by_itself(
        tmp_path, own_postgres, tenant_db, capsys):
    dsn, password = tenant_db
    srv = start_server(tmp_path, "srv", dsn)
    try:
        with scim_client(srv, srv.token) as c:
            kept = c.post("/Users", json=body("kept@example.com")).json()
            own_postgres.halt()
            took = []
            for request in (
                    lambda: c.get("/Users", params={"filter": 'userName eq "kept@example.com"'}),
                    lambda: c.post("/Users", json=body("lost@example.com")),
                    lambda: c.get(f"/Users/{kept['id']}")):
                t0 = time.monotonic()
                r = request()
                took.append(time.monotonic() - t0)
                assert r.status_code == 503, r.text
                assert r.headers["Retry-After"].isdigit()
                assert r.json()["status"] == "503" and "retry" in r.json()["detail"]
            ready = httpx.get(srv.root + "/readyz")
            assert ready.status_code == 503
            assert ready.json()["problems"][0].startswith("database: DatabaseUnreachable: ")
            own_postgres.start()
            t0 = time.monotonic()
            wait_until(lambda: c.get(f"/Users/{kept['id']}").status_code == 200,
                       what="the server to reconnect")
            back = time.monotonic() - t0
            with capsys.disabled():  # figures, not assertions: the machine decides them
                print(f"\ndatabase down: first 503 after {took[0]:.2f} s, then "
                      f"{max(took[1:]) * 1000:.0f} ms; answering again {back:.2f} s after "
                      "the database was back")
            assert c.get(f"/Users/{kept['id']}").json() == kept
            assert c.get("/Users", params={"filter": 'userName eq "lost@example.com"'}
                         ).json()["totalResults"] == 0  # a 503 stored nothing
            assert httpx.get(srv.root + "/readyz").status_code == 200
    finally:
        srv.stop()
    output = srv.logs() + srv.out_path.read_text()
    assert "database" in output and password not in output


def test_a_server_started_before_its_database_opens_it_when_it_answers(
        tmp_path, own_postgres, tenant_db):
    dsn, _ = tenant_db
    own_postgres.halt()
    srv = start_server(tmp_path, "srv", dsn, ready=False)
    try:
        ready = httpx.get(srv.root + "/readyz")
        assert ready.status_code == 503 and "has not answered" in ready.json()["problems"][0]
        with scim_client(srv, srv.token) as c:
            r = c.get("/Users")
            assert r.status_code == 503 and "Retry-After" in r.headers
            own_postgres.start()
            wait_until(lambda: httpx.get(srv.root + "/readyz").status_code == 200,
                       timeout=60, what="the database to be opened")
            assert c.post("/Users", json=body("first@example.com")).status_code == 201
    finally:
        srv.stop()


def test_a_wrong_password_is_named_and_the_password_is_not(tmp_path, own_postgres, tenant_db):
    dsn, password = tenant_db
    wrong = dsn.replace(password, "not-" + password)
    srv = start_server(tmp_path, "srv", wrong, ready=False)
    try:
        wait_until(lambda: "DatabaseAuthFailed" in str(httpx.get(srv.root + "/readyz").json()),
                   what="readiness to name the failure")
        problem = httpx.get(srv.root + "/readyz").json()["problems"][0]
        assert 'password authentication failed for user "acme"' in problem
        with scim_client(srv, srv.token) as c:
            r = c.get("/Users")
            assert r.status_code == 503 and "Retry-After" in r.headers
    finally:
        srv.stop()
    output = srv.logs() + srv.out_path.read_text()
    assert "DatabaseAuthFailed" in output and password not in output


def test_a_replica_killed_under_load_loses_no_acknowledged_write(tmp_path, tenant_db, capsys):
    dsn, _ = tenant_db
    a, b = (start_server(tmp_path, name, dsn) for name in ("a", "b"))
    acknowledged, after_kill = [], []
    killed = threading.Event()

    def create(n: int) -> None:
        target = a if n % 2 else b
        name = f"load-{n}@example.com"
        try:
            with scim_client(target, target.token) as c:
                r = c.post("/Users", json=body(name))
        except httpx.TransportError:
            return  # the killed replica: never acknowledged
        assert r.status_code in (201, 503), r.text
        if r.status_code == 201:
            acknowledged.append(name)
            if killed.is_set() and target is b:
                after_kill.append(name)

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(create, n) for n in range(400)]
            wait_until(lambda: len(acknowledged) >= 100, what="load on both replicas")
            a.stop(signal.SIGKILL)
            killed.set()
            for f in futures:
                f.result()
        assert after_kill, "the other replica kept answering"
        with capsys.disabled():
            print(f"\nkill -9 under load: {len(acknowledged)} creates acknowledged "
                  f"({len(after_kill)} by the other replica after the kill), all kept")
        with scim_client(b, b.token) as c:
            stored = {u["userName"] for u in c.get("/Users", params={"count": 1000}
                                                   ).json()["Resources"]}
        assert set(acknowledged) <= stored
    finally:
        a.stop(signal.SIGKILL)
        b.stop()
