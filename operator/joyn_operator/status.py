"""Status aggregation as a pure function: the children's observed state -> metav1.Condition list.

Reasons name the real cause (ImagePullBackOff, CrashLoopBackOff, VolumePending,
IngressClassNotFound, TLSSecretMissing, CertificatePending, RouteUnreachable, ...) so that
`kubectl get jst -o wide` tells a platform engineer why a tenant is not ready without reading
logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .keys import PAUSED_ANNOTATION, REPLACED_ACK_ANNOTATION
from .tokens import fmt, parse_time

FAILING_WAIT_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                                  "CrashLoopBackOff", "CreateContainerConfigError",
                                  "CreateContainerError", "RunContainerError"})


@dataclass
class Observed:
    """What the operator read back from the cluster for one tenant."""

    url: str | None
    token_present: bool
    token_missing: str | None = None  # what is missing, named, when no token is there
    deployment: dict | None = None
    pods: list[dict] = field(default_factory=list)
    pvc: dict | None = None
    ingress_wanted: bool = True
    ingress: dict | None = None
    ingress_class_exists: bool | None = None  # None: no class named, nothing to check
    # (reason, message) of a certificate that keeps Entra out (certificates.py): cert-manager's
    # Certificate not Ready, or the user's own TLS Secret missing, expired or for another host.
    tls_problem: tuple[str, str] | None = None
    # (reason, message) of the operator's own Test Connection through the ingress controller
    # (route.py): RoutePending before its first answer, RouteUnreachable when it failed. None:
    # it passed, or the check is off.
    route_problem: tuple[str, str] | None = None
    apply_errors: list[str] = field(default_factory=list)  # children the API server refused
    conflicts: list[str] = field(default_factory=list)  # names taken by objects not ours
    host_conflict: str | None = None  # an older tenant serves the same host and path
    token_replaced_at: datetime | None = None  # a deleted Secret forced a new token then
    # (reason, message) of an event stream problem: Degraded, while Ready (Entra is served)
    # stays as it is.
    events_problem: tuple[str, str] | None = None
    # (reason, message) of why the tenant's PostgreSQL database cannot be used (database.py,
    # tenant.connection_problem) or of its move there (move.py): PROGRESS or a failure.
    database_problem: tuple[str, str] | None = None


# Database reasons that are steps on the way, not failures: Progressing, not Degraded.
PROGRESS = frozenset({"DatabaseProvisioning", "StorageMoving"})


def _cond(type_: str, ok: bool, reason: str, message: str) -> dict:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason,
            "message": message}


def _pod_failure(pods: list[dict]) -> tuple[str, str] | None:
    for pod in pods:
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FAILING_WAIT_REASONS:
                return waiting["reason"], waiting.get("message") or waiting["reason"]
    return None


def _pod_pending(pods: list[dict]) -> str | None:
    for pod in pods:
        for c in (pod.get("status") or {}).get("conditions") or []:
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return c.get("message") or "the pod is not scheduled"
    if pods and all((p.get("status") or {}).get("phase") == "Pending" for p in pods):
        return "the pod is Pending"
    return None


def available(deployment: dict | None) -> bool:
    """All the tenant's conditions read of its Deployment's status: a replica is available,
    and the status describes the current spec."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    return (status.get("availableReplicas") or 0) >= 1 and \
        (status.get("observedGeneration") or 0) >= (deployment["metadata"].get("generation") or 0)


def _ingress(o: Observed) -> dict:
    if o.host_conflict:
        return _cond("IngressReady", False, "HostConflict", o.host_conflict)
    if not o.ingress_wanted:
        return _cond("IngressReady", True, "IngressDisabled",
                     f"No managed Ingress (spec.ingress.enabled=false): your own Ingress must "
                     f"serve {o.url or 'the Tenant URL'}")
    if o.url is None:
        return _cond("IngressReady", False, "HostUnknown",
                     "Set spec.ingress.host, or the operator's domain, to derive the host")
    if o.ingress is None:
        return _cond("IngressReady", False, "IngressMissing", "The Ingress does not exist yet")
    if o.ingress_class_exists is False:
        cls = (o.ingress.get("spec") or {}).get("ingressClassName")
        return _cond("IngressReady", False, "IngressClassNotFound",
                     f"IngressClass {cls!r} does not exist in the cluster")
    if o.tls_problem:
        return _cond("IngressReady", False, *o.tls_problem)
    lb = ((o.ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress")
    if not lb:
        return _cond("IngressReady", False, "IngressPending",
                     "Waiting for the ingress controller to admit the Ingress")
    if o.route_problem:
        return _cond("IngressReady", False, *o.route_problem)
    return _cond("IngressReady", True, "IngressReady", f"Serving {o.url}")


def next_deadline(status: dict) -> datetime | None:
    """When the earliest previous credential of a tenant (its token, the event receiver's
    token, a previous signing key) stops being accepted or published, from its status."""
    events = status.get("events") or {}
    times = [parse_time((part or {}).get("previousValidUntil")) for part in (
        status.get("token"), events.get("receiverToken"), events.get("signingKey"))]
    return min((t for t in times if t), default=None)


def merge_patch(old: dict, new: dict) -> dict:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`, {} when they are equal. A
    key `new` lacks is set to null at any depth: a merge patch that leaves a key out keeps it
    (status.token.previousValidUntil stayed after the rotation's deadline)."""
    patch: dict = {k: None for k in old.keys() - new.keys()}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if sub := merge_patch(before, value):
                patch[key] = sub
        elif key not in old or before != value:
            patch[key] = value
    return patch


def conditions(o: Observed, *, paused: bool, previous_valid_until: datetime | None,
               generation: int, previous: list[dict] | None, now: datetime,
               previous_count: int = 1) -> list[dict]:
    """The six conditions, with lastTransitionTime carried over when a status did not change."""
    failure = _pod_failure(o.pods)
    pvc_phase = ((o.pvc or {}).get("status") or {}).get("phase")
    is_available = available(o.deployment)
    ingress = _ingress(o)

    if o.apply_errors:
        failure = ("ApplyFailed", "; ".join(o.apply_errors))
    if o.token_replaced_at:
        failure = ("TokenReplaced", f"The token Secret was deleted at {fmt(o.token_replaced_at)} "
                   "and a new token made: Entra's token no longer works. Give the customer's "
                   "Entra admin the new token (kubectl joyn handover --rotation), then "
                   f"kubectl joyn acknowledge (or set the annotation {REPLACED_ACK_ANNOTATION} "
                   "to a new value)")
    if o.database_problem and o.database_problem[0] not in PROGRESS:
        failure = o.database_problem
    if o.host_conflict:
        failure = ("HostConflict", o.host_conflict)
    if o.conflicts:
        failure = ("NameConflict", "; ".join(o.conflicts))
    if failure:
        degraded = _cond("Degraded", True, failure[0], failure[1])
    elif o.pvc is not None and pvc_phase == "Lost":
        degraded = _cond("Degraded", True, "VolumeLost", "The data volume claim is Lost")
    elif o.events_problem:
        degraded = _cond("Degraded", True, *o.events_problem)
    else:
        degraded = _cond("Degraded", False, "AsExpected", "No failure observed")

    if is_available:
        progressing = _cond("Progressing", False, "Stable", "The server is running")
    elif o.database_problem and o.database_problem[0] in PROGRESS:
        progressing = _cond("Progressing", True, *o.database_problem)
    elif o.pvc is not None and pvc_phase == "Pending":
        progressing = _cond("Progressing", True, "VolumePending",
                            f"PersistentVolumeClaim {o.pvc['metadata']['name']} is Pending: "
                            "no volume is bound yet")
    elif pending := _pod_pending(o.pods):
        progressing = _cond("Progressing", True, "PodPending", pending)
    else:
        progressing = _cond("Progressing", True, "Deploying",
                            "Waiting for the server's Deployment to become available")

    if failure and failure[0] in ("NameConflict", "HostConflict"):
        ready = _cond("Ready", False, *failure)
    elif not o.token_present:
        ready = _cond("Ready", False, "TokenMissing", o.token_missing or "No token")
    elif failure:
        ready = _cond("Ready", False, degraded["reason"], degraded["message"])
    elif not is_available:
        ready = _cond("Ready", False, progressing["reason"], progressing["message"])
    elif ingress["status"] != "True":
        ready = _cond("Ready", False, ingress["reason"], ingress["message"])
    else:
        ready = _cond("Ready", True, "Ready", f"Serving {o.url}")

    rotation = _cond("TokenRotationPending", False, "NoRotation", "Only the current token is valid")
    if previous_valid_until:
        more = f" ({previous_count - 1} later one(s) longer)" if previous_count > 1 else ""
        rotation = _cond("TokenRotationPending", True, "PreviousTokenValid",
                         f"The previous token stays valid until {fmt(previous_valid_until)}"
                         + more)
    pause = _cond("Paused", paused, "Paused" if paused else "Reconciling",
                  f"Changes to children are paused by the {PAUSED_ANNOTATION} annotation"
                  if paused else "The operator reconciles this tenant")

    old = {c["type"]: c for c in previous or []}
    out = []
    for c in (ready, progressing, degraded, ingress, rotation, pause):
        before = old.get(c["type"])
        same = before and before.get("status") == c["status"]
        c["lastTransitionTime"] = before["lastTransitionTime"] if same else fmt(now)
        c["observedGeneration"] = generation
        out.append(c)
    return out
