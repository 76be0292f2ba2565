"""Tenants on PostgreSQL, on the real node: CloudNativePG runs the database (tests/kube/cnpg.py),
the operator declares each tenant's role and database in it, and Entra's requests go through
the ingress controller to two server replicas. A replica deleted under load, a tenant moved
from SQLite to PostgreSQL while Entra keeps sending, and a wrong connection Secret, as a
platform engineer would see them."""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter

import httpx
import pytest

from .cnpg import API, module_cluster_namespace, module_cnpg, timed
from .conftest import eventually, module_operator
from .test_tenant_e2e import (
    TEST_CONNECTION,
    USER,
    Entra,
    conditions,
    create_tenant,
    pods,
    secret,
    tenant,
)
from .test_tenant_e2e import (
    wait_ready as _wait_ready,
)

pytestmark = pytest.mark.timeout(900)
TENANTS = "/apis/scim.sevenlakes.com/v1alpha1/namespaces/{ns}/joynscimtenants"


@pytest.fixture(scope="module")
def cnpg(cluster, tmp_path_factory):
    yield from module_cnpg(cluster, tmp_path_factory)


@pytest.fixture(scope="module")
def ns(kube, cnpg, tenant_crd):
    """The tenants' namespace, which also holds their CloudNativePG Cluster."""
    yield from module_cluster_namespace(kube, "pgt")


@pytest.fixture(scope="module")
def pg(kube, cnpg, ns):
    return timed("Cluster created until Ready", cnpg.create_cluster, kube, ns, "pg")


@pytest.fixture(scope="module")
def operator(cluster, ns, pg, tmp_path_factory, request):
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN=cluster.domain,
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="traefik",
                               RESYNC_SECONDS="3", ACTIVITY_SECONDS="2")


def wait_ready(kube, ns, name) -> dict:
    """wait_ready, saying on a timeout what the tenant and its pods say."""
    try:
        return _wait_ready(kube, ns, name)
    except AssertionError as e:
        states = [(p["metadata"]["name"], p["status"].get("phase"),
                   [c.get("state") for c in p["status"].get("containerStatuses") or []])
                  for p in pods(kube, ns, name)]
        raise AssertionError(f"{e}\nconditions: {conditions(kube, ns, name)}\n"
                             f"pods: {states}") from None


def merge_patch(kube, path: str, body: dict) -> None:
    r = kube.http.patch(path, json=body,
                        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


def ready_pods(kube, ns, name) -> list[dict]:
    """The tenant's server pods that are ready and not going away."""
    def ready(p):
        statuses = p["status"].get("containerStatuses") or []
        return bool(statuses) and all(c.get("ready") for c in statuses)

    return [p for p in pods(kube, ns, name)
            if not p["metadata"].get("deletionTimestamp")
            and p["metadata"]["labels"].get("app.kubernetes.io/name") == "joyn-scim"
            and ready(p)]


class Load:
    """Entra's matching requests, back to back on a thread, counted by status."""

    def __init__(self, entra: Entra, token: str) -> None:
        self.entra, self.token = entra, token
        self.statuses: Counter = Counter()
        self.refused: list[float] = []  # when each answer other than 200 came (monotonic)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                code = self.entra.request("GET", "/Users", self.token,
                                          params=TEST_CONNECTION).status_code
            except httpx.HTTPError as e:  # a refused or reset connection counts too
                code = type(e).__name__
            self.statuses[code] += 1
            if code != 200:
                self.refused.append(time.monotonic())

    @property
    def window(self) -> float:
        """Seconds from the first answer other than 200 to the last."""
        return self.refused[-1] - self.refused[0] if self.refused else 0.0

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_two_replicas_on_cloudnativepg_serve_entra_and_survive_losing_one(
        kube, cluster, ns, pg, operator):
    name = create_tenant(kube, cluster, ns, storage={"postgresql": {"cluster": {"name": "pg"}}},
                         server={"replicas": 2})
    conds = timed("PostgreSQL tenant Ready", wait_ready, kube, ns, name)
    status = tenant(kube, ns, name)["status"]
    assert status["storage"]["type"] == "PostgreSQL"
    role = status["storage"]["database"]
    for kind in ("databaseroles", "databases"):
        obj = kube.get(f"{API}/namespaces/{ns}/{kind}/{ns}-{name}-scim").json()
        assert obj["status"]["applied"] is True, obj["status"]
        assert obj["spec"]["name"] == role
    assert conds["Ready"]["reason"] == "Ready"
    eventually(lambda: len(ready_pods(kube, ns, name)) == 2, timeout=120, what="two replicas")
    assert kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}-scim-data"
                    ).status_code == 404
    budget = kube.get(f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets/{name}-scim")
    assert budget.status_code == 200 and budget.json()["spec"]["maxUnavailable"] == 1

    entra = Entra(cluster, status["url"])
    token = secret(kube, ns, name)["token"]
    eventually(lambda: entra.test_connection(token) == 200, timeout=60, what="the route")
    made = entra.request("POST", "/Users", token, json={
        "schemas": [USER], "userName": "ada@acme.example", "externalId": "ada"})
    assert made.status_code == 201, made.text
    # The data is in the tenant's own database, as its own role.
    with pg.connect(kube, user=role, password=base64.b64decode(kube.get(
            f"/api/v1/namespaces/{ns}/secrets/{name}-scim-database").json()["data"]["password"]
            ).decode(), dbname=role) as conn:
        assert conn.execute("SELECT id FROM users").fetchall() == [(made.json()["id"],)]

    with Load(entra, token) as load:
        eventually(lambda: sum(load.statuses.values()) >= 20, what="load before")
        victim = ready_pods(kube, ns, name)[0]["metadata"]["name"]
        kube.delete(f"/api/v1/namespaces/{ns}/pods/{victim}")
        eventually(lambda: len(ready_pods(kube, ns, name)) == 2 and victim not in
                   [p["metadata"]["name"] for p in ready_pods(kube, ns, name)],
                   timeout=120, what="the replaced replica ready")
        seen = sum(load.statuses.values())
        eventually(lambda: sum(load.statuses.values()) >= seen + 20, what="load after")
    print(f"requests while a replica was replaced: {dict(load.statuses)}")
    assert set(load.statuses) == {200}, load.statuses

    # A rolling update (a new setting, as an upgrade would be) during an Entra cycle.
    before = {p["metadata"]["name"] for p in ready_pods(kube, ns, name)}
    with Load(entra, token) as load:
        eventually(lambda: sum(load.statuses.values()) >= 20, what="load before")
        merge_patch(kube, f"{TENANTS.format(ns=ns)}/{name}",
                    {"spec": {"server": {"logLevel": "debug"}}})
        eventually(lambda: len(now := ready_pods(kube, ns, name)) == 2 and not before & {
            p["metadata"]["name"] for p in now}, timeout=240, what="both replicas replaced")
    print(f"requests during a rolling update: {dict(load.statuses)}")
    assert set(load.statuses) == {200}, load.statuses
    password = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}-scim-database").json()[
        "data"]["password"]
    assert base64.b64decode(password).decode() not in operator.log.read_text()


def test_a_tenant_moves_from_sqlite_to_postgresql_while_entra_sends(
        kube, cluster, ns, pg, operator):
    name = create_tenant(kube, cluster, ns)
    wait_ready(kube, ns, name)
    url = tenant(kube, ns, name)["status"]["url"]
    entra, token = Entra(cluster, url), secret(kube, ns, name)["token"]
    eventually(lambda: entra.test_connection(token) == 200, timeout=60, what="the route")
    users = [entra.request("POST", "/Users", token, json={
        "schemas": [USER], "userName": f"u{n}@acme.example", "emails": [
            {"value": f"u{n}@acme.example", "type": "work", "primary": True}]}).json()
             for n in range(20)]
    before = {u["id"]: u for u in users}

    with Load(entra, token) as load:
        merge_patch(kube, f"{TENANTS.format(ns=ns)}/{name}",
                    {"spec": {"storage": {"postgresql": {"cluster": {"name": "pg"}}}}})
        moved = eventually(lambda: (s := tenant(kube, ns, name).get("status") or {}).get(
            "storage", {}).get("type") == "PostgreSQL" and
            conditions(kube, ns, name)["Ready"]["status"] == "True" and s,
            timeout=300, what="the tenant on PostgreSQL and Ready")
        eventually(lambda: load.statuses[200] > 0 and entra.test_connection(token) == 200,
                   timeout=60, what="Entra answered again")
    print(f"requests during the move: {dict(load.statuses)}, 503s for {load.window:.1f} s")
    # Entra saw answers and retryable 503s (the ingress controller's, while no server ran).
    assert set(load.statuses) <= {200, 503}, load.statuses
    claim = kube.get(f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}-scim-data").json()
    assert "scim.sevenlakes.com/moved-to-postgresql" in claim["metadata"]["annotations"]
    assert moved["storage"]["database"]
    for user_id, user in before.items():
        got = entra.request("GET", f"/Users/{user_id}", token)
        assert got.status_code == 200 and got.json() == user
    found = entra.request("GET", "/Users", token,
                          params={"filter": 'emails[type eq "work"].value eq "U7@acme.example"'})
    assert [u["id"] for u in found.json()["Resources"]] == [users[7]["id"]]


def test_a_wrong_connection_secret_is_named_until_it_is_right(kube, cluster, ns, pg, operator):
    name = create_tenant(kube, cluster, ns, storage={
        "postgresql": {"connectionSecretRef": {"name": "acme-db"}}})
    eventually(lambda: conditions(kube, ns, name).get("Ready", {}).get("reason")
               == "DatabaseSecretMissing", what="DatabaseSecretMissing")
    app = pg.secret(kube, "pg-app")
    wrong = {**app, "password": "not-" + app["password"]}
    r = kube.create(f"/api/v1/namespaces/{ns}/secrets", {
        "metadata": {"name": "acme-db"}, "stringData": wrong})
    assert r.status_code == 201, r.text
    ready = eventually(lambda: (c := conditions(kube, ns, name).get("Ready", {})).get("reason")
                       == "DatabaseAuthFailed" and c, timeout=180, what="DatabaseAuthFailed")
    assert "password authentication failed" in ready["message"]
    assert app["password"] not in str(tenant(kube, ns, name))
    # The server reads the Secret when it starts: the operator rolls it when the Secret changes.
    merge_patch(kube, f"/api/v1/namespaces/{ns}/secrets/acme-db",
                {"stringData": {"password": app["password"]}})
    wait_ready(kube, ns, name)
