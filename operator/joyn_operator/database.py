"""A tenant's PostgreSQL database: what the operator declares in a CloudNativePG cluster, the
connection Secret the server reads, and why the database cannot be used (for conditions).

With `spec.storage.postgresql.cluster` the operator declares, in the cluster's namespace, the
tenant's role (a CloudNativePG `DatabaseRole` with a generated password in a basic-auth Secret)
and a `Database` that role owns; in the tenant's namespace, a connection Secret shaped like
CloudNativePG's `<cluster>-app` (host, port, dbname, user, username, password) for the server.
The password is made once and carried over from that Secret, like a token. Each tenant's role
owns only its own database, and the server revokes CONNECT on it from PUBLIC when it migrates,
so no tenant's credentials open another tenant's database (one database and role per tenant:
docs/platform/postgres.md has the measurements behind the choice).

In the tenant's own namespace they are owned by the tenant (unless deletionPolicy is Retain),
so deleting the tenant deletes them and CloudNativePG drops the role and database. In another
namespace they cannot be owned (ownerReferences stay within a namespace) and the operator has
no finalizer to delete them with (a finalizer would hang namespace deletion whenever the
operator is down): they carry the tenant's labels and namespace, and the platform team deletes
them (docs/platform/postgres.md shows the one command).

All pure; the reconcile applies what these return.
"""

from __future__ import annotations

import base64
import re
import secrets

from .keys import TENANT_NAMESPACE_LABEL
from .tenant import ResolvedTenant

CNPG_API = "/apis/postgresql.cnpg.io/v1"
CNPG_VERSION = "postgresql.cnpg.io/v1"
PORT = "5432"
# CloudNativePG reloads a role's password when its Secret carries this label.
RELOAD_LABEL = "cnpg.io/reload"
CONNECTION_LIMIT_PER_REPLICA = 12  # the server's pool (8), its LISTEN, leader and spare ones


def new_password() -> str:
    return secrets.token_urlsafe(32)


def _meta(t: ResolvedTenant, name: str, namespace: str) -> dict:
    meta = {"name": name, "namespace": namespace,
            "labels": {**t.labels, TENANT_NAMESPACE_LABEL: t.namespace}}
    if namespace == t.namespace and not t.storage.retained:
        meta["ownerReferences"] = [t.owner]
    return meta


def _b64(data: dict[str, str]) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


def cluster_objects(t: ResolvedTenant, password: str) -> list[dict]:
    """The role's password Secret, the DatabaseRole and the Database, in apply order."""
    c = t.storage.postgres.cluster
    reclaim = "retain" if t.storage.retained else "delete"
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
              "metadata": _meta(t, c.password_secret, c.namespace),
              "data": _b64({"username": c.role, "password": password})}
    secret["metadata"]["labels"][RELOAD_LABEL] = "true"
    role = {"apiVersion": CNPG_VERSION, "kind": "DatabaseRole",
            "metadata": _meta(t, c.database_object, c.namespace),
            "spec": {"cluster": {"name": c.name}, "name": c.role, "ensure": "present",
                     "login": True, "passwordSecret": {"name": c.password_secret},
                     "connectionLimit": CONNECTION_LIMIT_PER_REPLICA * t.server.replicas + 2,
                     "comment": f"joyn-scim tenant {t.namespace}/{t.name}",
                     "databaseRoleReclaimPolicy": reclaim}}
    database = {"apiVersion": CNPG_VERSION, "kind": "Database",
                "metadata": _meta(t, c.database_object, c.namespace),
                "spec": {"cluster": {"name": c.name}, "name": c.role, "owner": c.role,
                         "ensure": "present", "encoding": "UTF8",
                         "databaseReclaimPolicy": reclaim}}
    return [secret, role, database]


def connection_data(t: ResolvedTenant, password: str) -> dict[str, str]:
    """The connection Secret's values for a tenant on a CloudNativePG cluster."""
    c = t.storage.postgres.cluster
    return {"host": c.host, "port": PORT, "dbname": c.role, "user": c.role,
            "username": c.role, "password": password}


def applied_problem(kind: str, obj: dict | None) -> tuple[str, str] | None:
    """Why CloudNativePG has not made the role or database yet, if it has not."""
    if obj is None:
        return ("DatabaseProvisioning", f"Waiting for CloudNativePG's {kind}")
    status = obj.get("status") or {}
    if status.get("applied") is True:
        return None
    name = obj["metadata"]["name"]
    if status.get("message"):
        return ("DatabaseProvisioningFailed",
                f"CloudNativePG did not make {kind} {name}: {status['message']}")
    return ("DatabaseProvisioning", f"Waiting for CloudNativePG to make {kind} {name}")


def cluster_problem(t: ResolvedTenant, cluster: dict | None, served: bool
                    ) -> tuple[str, str] | None:
    c = t.storage.postgres.cluster
    if not served:
        return ("DatabaseClusterMissing", "CloudNativePG is not installed (the API "
                f"{CNPG_VERSION} is not served): the tenant's database cannot be made")
    if cluster is None:
        return ("DatabaseClusterMissing", f"CloudNativePG Cluster {c.name} does not exist in "
                f"namespace {c.namespace} (spec.storage.postgresql.cluster)")
    return None


# The reasons a server's /readyz gives for its database (scim_server/storage/postgres.py's
# problem()), with what each means: only these reach a tenant's status.
SERVER_REASONS = dict((
    ("DatabaseAuthFailed", "the database refused the server's user or password"),
    ("DatabaseMissing", "the database the connection names does not exist"),
    ("DatabaseUnreachable", "the server cannot reach the database (address, port, network)"),
))

# /readyz's line for the database (scim_server/app.py, storage/postgres.py's ping):
# "database: [the database has not answered yet: ]<Reason>: <PostgreSQL's message>".
_READY_LINE = re.compile(r"database: (?:.*?: )?(Database[A-Za-z]+): (.*)")


def readiness_problem(ready: dict | None) -> tuple[str, str] | None:
    """(reason, message) from a server pod's /readyz answer, when its database is the
    problem: what the pod itself sees, so the operator needs neither the password nor a
    route to the database."""
    for line in (ready or {}).get("problems") or []:
        m = _READY_LINE.fullmatch(line)
        if m and m.group(1) in SERVER_REASONS:
            return m.group(1), m.group(2)[:300]
    return None
