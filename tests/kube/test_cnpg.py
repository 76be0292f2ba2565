"""CloudNativePG runs PostgreSQL on the real node (tests/kube/cnpg.py: the operator as a
Deployment with its webhooks, the images built here): a Cluster of one instance becomes Ready
and serves its `-app` Secret's user, over TLS its own CA signs, from the host and from a pod; a
role declared in the Cluster (`spec.managed.roles`, its password in a Secret) owns a database
declared by a `Database`, and connects to it with that password and no other; so does a role
declared by a `DatabaseRole` of its own, whose password follows its Secret when rotated. That
is how the operator gives a tenant its database."""

from __future__ import annotations

import secrets

import psycopg
import pytest

from .cnpg import API, module_cluster_namespace, module_cnpg, timed
from .conftest import eventually

# The first test takes the install and the Cluster's start (the session's cluster start too,
# when it runs alone).
pytestmark = pytest.mark.timeout(600)
ROLE = "tenant_a"  # a PostgreSQL identifier: the role and its database
ROLE_SECRET = "tenant-a-db"


@pytest.fixture(scope="module")
def cnpg(cluster, tmp_path_factory):
    yield from module_cnpg(cluster, tmp_path_factory)


@pytest.fixture(scope="module")
def ns(kube, cnpg):
    """The Clusters' namespace."""
    yield from module_cluster_namespace(kube, "cnpg")


@pytest.fixture(scope="module")
def role_password(kube, ns) -> str:
    password = secrets.token_urlsafe(18)
    basic_auth_secret(kube, ns, ROLE_SECRET, ROLE, password)
    return password


@pytest.fixture(scope="module")
def pg(kube, cnpg, ns, role_password):
    return timed("Cluster created until Ready", cnpg.create_cluster, kube, ns, "pg", managed={
        "roles": [{"name": ROLE, "ensure": "present", "login": True,
                   "passwordSecret": {"name": ROLE_SECRET}}]})


def test_a_cluster_runs_the_debian_image_and_serves_its_app_user(kube, cnpg, pg):
    pod = kube.get(f"/api/v1/namespaces/{pg.ns}/pods/pg-1").json()
    images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    assert images["postgres"] == cnpg.images.postgresql
    assert pod["spec"]["initContainers"][0]["image"] == cnpg.images.operator
    app = pg.secret(kube, "pg-app")
    assert {"username", "password", "dbname", "host", "port", "uri"} <= app.keys()
    with pg.connect(kube) as conn:
        user, db, version, ssl = conn.execute(
            "select current_user, current_database(), version(), ssl from pg_stat_ssl"
            " where pid = pg_backend_pid()").fetchone()
        conn.execute("create table t (n int)")
        conn.execute("insert into t values (1), (2)")
        assert conn.execute("select sum(n) from t").fetchone() == (3,)
    assert (user, db, ssl) == (app["username"], app["dbname"], True)
    assert "PostgreSQL 15." in version and "Debian" in version
    print(f"PostgreSQL pod working set: {pg.primary_memory() / 2**20:.0f} MiB")


def basic_auth_secret(kube, ns: str, name: str, role: str, password: str) -> None:
    """A role's password Secret. CloudNativePG sees a change to it (a rotated password) only
    when it carries the `cnpg.io/reload` label: without, the role keeps its old password."""
    r = kube.create(f"/api/v1/namespaces/{ns}/secrets", {
        "metadata": {"name": name, "labels": {"cnpg.io/reload": "true"}},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": role, "password": password}})
    assert r.status_code == 201, r.text


def applied(kube, url: str, what: str) -> dict:
    """A Database's or DatabaseRole's status once applied; on a time-out, the last one (its
    message says why not: CloudNativePG retries a failed apply)."""
    last = {}

    def check():
        last.clear()
        last.update(kube.get(url).json().get("status") or {})
        return last.get("applied") and dict(last)
    try:
        return eventually(check, timeout=60, what=f"{what} to be applied")
    except AssertionError as e:
        raise AssertionError(f"{e}: {last}") from None


def owned_database(kube, pg, role: str) -> None:
    """A `Database` named as `role`, owned by it."""
    name = role.replace("_", "-")
    r = kube.create(f"{API}/namespaces/{pg.ns}/databases", {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Database", "metadata": {"name": name},
        "spec": {"name": role, "owner": role, "cluster": {"name": pg.name}}})
    assert r.status_code == 201, r.text
    applied(kube, f"{API}/namespaces/{pg.ns}/databases/{name}", f"Database {name}")


def assert_owner_connects(kube, pg, role: str, password: str) -> None:
    """`role` logs in to its own database with `password` and creates a table there."""
    with pg.connect(kube, user=role, password=password, dbname=role) as conn:
        assert conn.execute("select current_user, current_database(), pg_get_userbyid(datdba)"
                            " from pg_database where datname = current_database()"
                            ).fetchone() == (role, role, role)
        conn.execute("create table users (id text primary key)")


def logs_in(kube, pg, role: str, password: str) -> bool:
    """Whether `role` logs in with `password` (False: refused for it; anything else raises)."""
    try:
        psycopg.connect(host=pg.service_ip(kube), port=5432, user=role, dbname=role,
                        password=password, sslmode="require", connect_timeout=5).close()
    except psycopg.OperationalError as e:
        if "password authentication failed" in str(e):
            return False
        raise
    return True


def test_a_managed_role_owns_a_declarative_database_and_logs_in_with_its_secret(
        kube, pg, role_password):
    eventually(lambda: ROLE in ((pg.status(kube).get("managedRolesStatus") or {})
                                .get("byStatus") or {}).get("reconciled", []),
               timeout=60, what=f"role {ROLE} reconciled")
    owned_database(kube, pg, ROLE)
    assert_owner_connects(kube, pg, ROLE, role_password)
    assert not logs_in(kube, pg, ROLE, role_password + "x")


def test_a_database_role_resource_owns_a_database_and_follows_its_rotated_secret(kube, pg):
    """A `DatabaseRole` (CloudNativePG >= 1.30): one object per role beside the Cluster, as
    the operator declares a tenant's; a new password in its Secret replaces the old one."""
    role, old, new = "tenant_b", secrets.token_urlsafe(18), secrets.token_urlsafe(18)
    basic_auth_secret(kube, pg.ns, "tenant-b-db", role, old)
    r = kube.create(f"{API}/namespaces/{pg.ns}/databaseroles", {
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "DatabaseRole",
        "metadata": {"name": "tenant-b"},
        "spec": {"cluster": {"name": pg.name}, "name": role, "login": True,
                 "passwordSecret": {"name": "tenant-b-db"}}})
    assert r.status_code == 201, r.text
    applied(kube, f"{API}/namespaces/{pg.ns}/databaseroles/tenant-b", "DatabaseRole tenant-b")
    owned_database(kube, pg, role)
    assert_owner_connects(kube, pg, role, old)

    r = kube.http.patch(f"/api/v1/namespaces/{pg.ns}/secrets/tenant-b-db",
                        json={"stringData": {"password": new}},
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text

    eventually(lambda: not logs_in(kube, pg, role, old), timeout=60,
               what="the rotated password to replace the old one")
    with pg.connect(kube, user=role, password=new, dbname=role) as conn:
        assert conn.execute("select current_user").fetchone() == (role,)


def test_a_pod_reaches_the_rw_service_with_the_app_secret(kube, cnpg, pg):
    """As a tenant's server would: everything from the `-app` Secret, its `host` (the `-rw`
    Service's name) resolved by the cluster's DNS."""
    def from_app(key: str) -> dict:
        return {"secretKeyRef": {"name": "pg-app", "key": key}}

    r = kube.create(f"/api/v1/namespaces/{pg.ns}/pods", {
        "metadata": {"name": "psql"}, "spec": {
            "restartPolicy": "Never", "automountServiceAccountToken": False,
            "containers": [{
                "name": "psql", "image": cnpg.images.postgresql, "imagePullPolicy": "Never",
                "command": ["psql", "-tAc", "select current_user || ' ' || ssl from pg_stat_ssl"
                            " where pid = pg_backend_pid()"],
                "env": [{"name": "PGHOST", "valueFrom": from_app("host")},
                        {"name": "PGSSLMODE", "value": "require"},
                        {"name": "PGUSER", "valueFrom": from_app("username")},
                        {"name": "PGDATABASE", "valueFrom": from_app("dbname")},
                        {"name": "PGPASSWORD", "valueFrom": from_app("password")}]}]}})
    assert r.status_code == 201, r.text
    path = f"/api/v1/namespaces/{pg.ns}/pods/psql"
    phase = eventually(lambda: kube.get(path).json()["status"].get("phase") in (
        "Succeeded", "Failed") and kube.get(path).json()["status"]["phase"], timeout=120,
        what="the psql pod to finish")
    log = kube.get(f"{path}/log").text
    assert (phase, log.strip()) == ("Succeeded", f"{pg.secret(kube, 'pg-app')['username']} true")
