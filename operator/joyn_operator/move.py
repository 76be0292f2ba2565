"""Moving a running tenant from SQLite to PostgreSQL, when its spec.storage gains postgresql.

The operator stops the server (its Deployment at 0 replicas: Entra gets 503 from the ingress
controller, which it retries), runs `joyn-scim storage copy` from the volume into the empty
database in a Job (one transaction: it copies everything or nothing), marks the volume claim
moved, and starts the server on PostgreSQL. The volume claim is kept (never deleted by the
operator): it is the way back until the platform team deletes it. A failed copy leaves the
database empty and the tenant back on SQLite, serving, and says why (StorageMoveFailed);
deleting the Job tries again.

Pure: the reconcile reads the claim, the Job and the pods, and applies what these return.
"""

from __future__ import annotations

import copy
import dataclasses

from .desired import SERVER
from .keys import NAME_LABEL
from .tenant import ResolvedTenant

# On the volume claim once its data is in PostgreSQL: when (RFC 3339). Durable where the
# tenant's status is not (a restored tenant has none), so a move is never run twice.
MOVED_ANNOTATION = "scim.sevenlakes.com/moved-to-postgresql"
MOVE_POD_NAME = "joyn-scim-storage-move"  # its pods' name label: the Service never selects them
MOVE_DEADLINE = 3600  # seconds the copy may take (100,000 users take well under a minute)


def move_pending(t: ResolvedTenant, pvc: dict | None, ours: bool) -> bool:
    """Whether the tenant's data is still on its volume though its spec wants PostgreSQL."""
    if t.storage.postgres is None or pvc is None or not ours:
        return False
    return MOVED_ANNOTATION not in (pvc["metadata"].get("annotations") or {})


def on_sqlite(t: ResolvedTenant, replicas: int) -> ResolvedTenant:
    """`t` as it ran before the move (SQLite on its volume), with `replicas` pods."""
    return dataclasses.replace(
        t, storage=dataclasses.replace(t.storage, postgres=None),
        server=dataclasses.replace(t.server, replicas=replicas))


def job_name(t: ResolvedTenant) -> str:
    return f"{t.name}-scim-move"


def move_job(t: ResolvedTenant, deployment: dict) -> dict:
    """The copy, as a Job running the server's own image with the PostgreSQL Deployment's
    pod (its database variables, security context, pull secrets, scheduling), the data
    volume mounted where the server had it."""
    pod = copy.deepcopy(deployment["spec"]["template"])
    pod["metadata"]["labels"] = {**pod["metadata"]["labels"], NAME_LABEL: MOVE_POD_NAME}
    spec = pod["spec"]
    spec["restartPolicy"] = "Never"
    spec.pop("topologySpreadConstraints", None)
    container = spec["containers"][0]
    container["name"] = "storage-copy"
    container["args"] = ["storage", "copy", "--from", f"sqlite:{SERVER['data_dir']}/scim.db",
                         "--to", "$(JOYN_SCIM_DB)"]
    # What the copy printed on failure (never a password) becomes the pod's message.
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    for key in ("ports", "readinessProbe", "livenessProbe", "lifecycle"):
        container.pop(key, None)
    spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": t.names.pvc}}
                       if v["name"] == "data" else v for v in spec["volumes"]]
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(t), "namespace": t.namespace, "labels": t.labels,
                         "ownerReferences": [t.owner]},
            "spec": {"backoffLimit": 0, "activeDeadlineSeconds": MOVE_DEADLINE,
                     "template": pod}}


def job_outcome(job: dict | None) -> str | None:
    """None (no Job), "running", "succeeded" or "failed"."""
    if job is None:
        return None
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("status") == "True" and c.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
        if c.get("status") == "True" and c.get("type") in ("Failed", "FailureTarget"):
            return "failed"
    return "running"


def failure_message(t: ResolvedTenant, pods: list[dict]) -> str:
    said = ""
    for pod in pods:
        for s in (pod.get("status") or {}).get("containerStatuses") or []:
            said = ((s.get("state") or {}).get("terminated") or {}).get("message") or said
    said = " ".join(said.split())[-400:]
    return (f"Copying the data from volume claim {t.names.pvc} to PostgreSQL failed (Job "
            f"{job_name(t)}{': ' + said if said else ''}). The tenant runs on SQLite meanwhile; "
            "delete the Job to try again")
