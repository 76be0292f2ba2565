"""A PostgreSQL tenant's desired state (joyn_operator.tenant, desired, database): no volume,
replicas that roll one at a time, the connection read from a Secret without the password ever
in the pod's spec, a CloudNativePG role and database of its own, and conditions that name why
its database cannot be used."""

import base64
import json
from datetime import UTC, datetime

import pytest
from joyn_operator.config import OperatorConfig
from joyn_operator.database import (
    SERVER_REASONS,
    applied_problem,
    cluster_objects,
    cluster_problem,
    connection_data,
    readiness_problem,
)
from joyn_operator.desired import children, storage_status
from joyn_operator.status import Observed, conditions
from joyn_operator.tenant import connection_problem, pg_name, resolve, with_connection

from scim_server.storage import postgres

CFG = OperatorConfig(server_image="registry.example/joyn-scim:1.2.3", domain="scim.example.com",
                     ingress_class="nginx", ingress_namespace="ingress-nginx")
SECRET_PG = {"postgresql": {"connectionSecretRef": {"name": "acme-db"}}}
CLUSTER_PG = {"postgresql": {"cluster": {"name": "pg", "namespace": "databases"}}}


def body(storage=None, **spec) -> dict:
    return {"metadata": {"name": "acme", "namespace": "customers", "uid": "uid-1"},
            "spec": {"displayName": "Acme", **({"storage": storage} if storage else {}),
                     **spec}}


def kinds(t) -> dict:
    return {c["kind"]: c for c in children(t)}


def secret(**data) -> dict:
    return {"metadata": {"name": "acme-db"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def env(t) -> dict:
    container = kinds(t)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_a_postgresql_tenant_has_no_volume_and_rolls_one_pod_at_a_time():
    t = resolve(body(SECRET_PG, server={"replicas": 3}), CFG)
    got = kinds(t)
    assert "PersistentVolumeClaim" not in got
    spec = got["Deployment"]["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate",
                                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert "persistentVolumeClaim" not in volumes["data"] and "emptyDir" in volumes["data"]
    budget = got["PodDisruptionBudget"]["spec"]
    assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": t.selector}}
    # Spread over nodes, where the cluster has them, without refusing to schedule.
    (spread,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == t.selector


def test_one_replica_has_no_disruption_budget_and_sqlite_never_more_than_one():
    assert "PodDisruptionBudget" not in kinds(resolve(body(SECRET_PG), CFG))
    # An object stored before the CRD's rule: still one pod on the ReadWriteOnce volume.
    t = resolve(body(server={"replicas": 3}), CFG)
    assert t.server.replicas == 1
    assert kinds(t)["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    assert "PodDisruptionBudget" not in kinds(t)


def test_the_password_is_read_from_the_secret_by_libpq_and_is_never_in_the_pod_spec():
    t = with_connection(resolve(body(SECRET_PG), CFG),
                        secret(host="h", port="5432", dbname="d", username="u", password="pw"))
    variables = env(t)
    assert variables["JOYN_SCIM_DB"] == "postgresql://"
    assert variables["PGPASSWORD"] == {"secretKeyRef": {"name": "acme-db", "key": "password"}}
    assert variables["PGUSER"] == {"secretKeyRef": {"name": "acme-db", "key": "username"}}
    assert variables["PGAPPNAME"] == "joyn-scim/acme"
    assert "pw" not in json.dumps(children(t))
    uri_only = with_connection(resolve(body(SECRET_PG), CFG), secret(uri="postgresql://x"))
    assert env(uri_only)["JOYN_SCIM_DB"] == {"secretKeyRef": {"name": "acme-db", "key": "uri"}}
    assert "PGPASSWORD" not in env(uri_only)


@pytest.mark.parametrize("data,reason", [
    (None, "DatabaseSecretMissing"),
    ({"host": "h", "port": "5432"}, "DatabaseSecretInvalid"),
    ({"uri": "postgresql://u@h/d"}, None),
    ({"host": "h", "port": "1", "dbname": "d", "user": "u", "password": "p"}, None),
])
def test_a_connection_secret_that_cannot_work_is_named(data, reason):
    got = None if data is None else secret(**data)
    t = with_connection(resolve(body(SECRET_PG), CFG), got)
    problem = connection_problem(t, got)
    assert (problem[0] if problem else None) == reason
    if problem:
        assert "acme-db" in problem[1]


def test_role_names_are_identifiers_unique_across_namespaces_and_short_enough():
    assert pg_name("customers", "acme-corp") == "scim_customers_acme_corp"
    long_a, long_b = pg_name("n" * 63, "a" * 40), pg_name("n" * 63, "a" * 39 + "b")
    assert len(long_a) == len(long_b) == 63 and long_a != long_b


def test_a_cloudnativepg_tenant_gets_a_role_and_database_of_its_own():
    t = resolve(body(CLUSTER_PG), CFG)
    password_secret, role, database = cluster_objects(t, "s3cret")
    c = t.storage.postgres.cluster
    assert {o["metadata"]["namespace"] for o in (password_secret, role, database)} == \
        {"databases"}
    assert password_secret["type"] == "kubernetes.io/basic-auth"
    assert password_secret["metadata"]["labels"]["cnpg.io/reload"] == "true"
    assert role["spec"]["name"] == database["spec"]["owner"] == database["spec"]["name"] == c.role
    assert role["spec"]["login"] is True and "superuser" not in role["spec"]
    assert role["spec"]["passwordSecret"] == {"name": password_secret["metadata"]["name"]}
    # Retain (the default): CloudNativePG keeps the database and role when the tenant goes.
    assert role["spec"]["databaseRoleReclaimPolicy"] == "retain"
    assert database["spec"]["databaseReclaimPolicy"] == "retain"
    # Another namespace: not owned (ownerReferences cannot cross namespaces), labelled.
    assert all("ownerReferences" not in o["metadata"] for o in (role, database))
    assert role["metadata"]["labels"]["scim.sevenlakes.com/tenant-namespace"] == "customers"
    assert connection_data(t, "s3cret") == {
        "host": "pg-rw.databases.svc", "port": "5432", "dbname": c.role, "user": c.role,
        "username": c.role, "password": "s3cret"}
    assert storage_status(t) == {"type": "PostgreSQL",
                                 "connectionSecretRef": {"name": "acme-scim-database"},
                                 "cluster": {"name": "pg", "namespace": "databases"},
                                 "database": c.role}


def test_in_the_tenants_namespace_with_delete_they_are_owned_and_dropped_with_it():
    t = resolve(body({"postgresql": {"cluster": {"name": "pg"}}, "deletionPolicy": "Delete"}),
                CFG)
    for obj in cluster_objects(t, "x"):
        assert obj["metadata"]["namespace"] == "customers"
        assert obj["metadata"]["ownerReferences"] == [t.owner]
    _, role, database = cluster_objects(t, "x")
    assert role["spec"]["databaseRoleReclaimPolicy"] == "delete"
    assert database["spec"]["databaseReclaimPolicy"] == "delete"


def test_cloudnativepg_missing_or_not_done_is_said():
    t = resolve(body(CLUSTER_PG), CFG)
    assert cluster_problem(t, None, served=False)[0] == "DatabaseClusterMissing"
    missing = cluster_problem(t, None, served=True)
    assert missing[0] == "DatabaseClusterMissing" and "pg" in missing[1]
    assert cluster_problem(t, {"metadata": {"name": "pg"}}, served=True) is None
    role = {"metadata": {"name": "r"}, "status": {}}
    assert applied_problem("DatabaseRole", role)[0] == "DatabaseProvisioning"
    role["status"] = {"applied": False, "message": "role exists and is not managed"}
    assert applied_problem("DatabaseRole", role) == (
        "DatabaseProvisioningFailed",
        "CloudNativePG did not make DatabaseRole r: role exists and is not managed")
    assert applied_problem("Database", {"metadata": {"name": "d"},
                                        "status": {"applied": True}}) is None


def test_readiness_names_the_database_problem_the_pod_sees():
    said = {"status": "unavailable", "problems": [
        'database: the database has not answered yet: DatabaseAuthFailed: connection failed: '
        'FATAL: password authentication failed for user "acme"']}
    assert readiness_problem(said) == ("DatabaseAuthFailed", 'connection failed: FATAL: '
                                       'password authentication failed for user "acme"')
    assert readiness_problem({"problems": ["no bearer token configured"]}) is None
    assert readiness_problem(None) is None
    # Only the reasons the server can give reach the status: the two lists are one.
    assert set(SERVER_REASONS) == {*postgres._REFUSED.values(), "DatabaseUnreachable"}
    assert readiness_problem({"problems": ["database: DatabaseOnFire: x"]}) is None


@pytest.mark.parametrize("problem,progressing,degraded", [
    (("DatabaseProvisioning", "Waiting for CloudNativePG"), "True", "False"),
    (("DatabaseAuthFailed", "password authentication failed"), "True", "True"),
])
def test_conditions_say_what_keeps_the_database_from_serving(problem, progressing, degraded):
    now = datetime(2026, 12, 7, tzinfo=UTC)
    conds = {c["type"]: c for c in conditions(
        Observed(url="https://x", token_present=True, database_problem=problem),
        paused=False, previous_valid_until=None, generation=1, previous=None, now=now)}
    assert conds["Ready"]["status"] == "False" and conds["Ready"]["reason"] == problem[0]
    assert conds["Progressing"]["status"] == progressing
    assert conds["Degraded"]["status"] == degraded


def test_a_changed_connection_secret_rolls_the_server_without_showing_its_values():
    def pod_annotations(data):
        t = with_connection(resolve(body(SECRET_PG), CFG), secret(**data))
        return kinds(t)["Deployment"]["spec"]["template"]["metadata"]["annotations"]

    first = pod_annotations({"uri": "postgresql://u:one@h/d"})
    assert first == pod_annotations({"uri": "postgresql://u:one@h/d"})
    assert first != pod_annotations({"uri": "postgresql://u:two@h/d"})
    assert "one" not in json.dumps(first)


def test_the_connection_secret_is_watched_for_the_tenant_that_names_it():
    from joyn_operator.tenant import references
    assert ("Secret", "customers", "acme-db") in references(resolve(body(SECRET_PG), CFG))
    # The operator's own Secret (a CloudNativePG tenant's) is its child, watched as such.
    assert all(kind != "Secret" for kind, _, _ in references(resolve(body(CLUSTER_PG), CFG)))
