"""The one idempotent reconcile of a tenant: generated Secrets, children, status.

Side effects live here. The tenant is resolved once (tenant.py); what its children, token and
status should be is computed by the pure functions in desired.py, tokens.py and status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import aiohttp

from . import KIND
from .activity import EVENTS_OBSERVED
from .certificates import certificate_problem, tls_secret_problem
from .config import OperatorConfig
from .database import (
    CNPG_API,
    applied_problem,
    cluster_objects,
    cluster_problem,
    connection_data,
    new_password,
    readiness_problem,
)
from .desired import SERVER, children, generated_secret, storage_status, token_secret
from .keys import DESIRED_DIGEST, SIGNING_KEY_KEY, TOKEN_KEY
from .kube import FIELD_MANAGER, Kube, KubeError, path, secret_data
from .move import (
    MOVED_ANNOTATION,
    failure_message,
    job_name,
    job_outcome,
    move_job,
    move_pending,
    on_sqlite,
)
from .rollout import Gate, choose_image, rolled
from .route import Target as RouteTarget
from .status import Observed, available, conditions, merge_patch
from .tenant import (
    Names,
    ResolvedTenant,
    Rotation,
    connection_problem,
    resolve,
    with_claim,
    with_connection,
)
from .tokens import EVENTS_TOKEN, SIGNING_KEY, TOKEN, Event, Kind, TokenState, fmt, next_state

OTHER_STATUS = frozenset({"kopf", "activity"})  # status keys a reconcile leaves alone
RECREATABLE = frozenset({"Deployment", "Service", "Ingress", "NetworkPolicy",
                         "PodDisruptionBudget"})
log = logging.getLogger("joyn_operator")

# An event sink: (tenant body, Event) -> awaitable. Kube.post_event in the operator.
EmitFn = Callable[[dict, Event], Awaitable[None]]


class Claim(NamedTuple):
    """A tenant's claim on a host and path; the oldest claim (then namespace, name) wins."""

    created: str  # metadata.creationTimestamp, RFC 3339, so it sorts as time
    namespace: str
    name: str


# The claims on a (host, path): the handlers' kopf index of every watched tenant's route.
ClaimsFn = Callable[[tuple[str, str]], Iterable[Claim]]
# The route check's verdict on a tenant (route.RouteChecker.problem): given the tenant and
# what to check (None: it is not otherwise ready), (reason, message) or None.
RouteFn = Callable[[tuple[str, str], RouteTarget | None], tuple[str, str] | None]
CERTIFICATE_API = "/apis/cert-manager.io/v1"


class KeyedLocks:
    """One asyncio.Lock per tenant, forgotten once nobody holds or awaits it (tenants come and
    go for years; a dict of locks that only grows would hold every name ever seen)."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]):
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def reconcile(body: dict, kube: Kube, cfg: OperatorConfig, emit: EmitFn,
                    locks: KeyedLocks, claims: ClaimsFn = lambda route: (),
                    now: Callable[[], datetime] = lambda: datetime.now(UTC),
                    rollout: Gate | None = None, route: RouteFn | None = None) -> dict:
    """Bring one tenant's children to their desired state and write its status.

    Serialised per tenant: create/update handlers, child events and the periodic resync may
    all call it at once. Returns the status it wrote (for tests and metrics).
    """
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    async with locks.hold(key):
        # Re-read: the body a child event carries may be stale by the time the lock is ours.
        fresh = await kube.get(path(KIND, *key))
        rollout = rollout if rollout is not None else Gate()
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            rollout.forget(key, cfg.rollout.batch_size)  # a place in a rollout is freed
            return {}
        return await _reconcile(fresh, kube, cfg, emit, claims, now(), rollout, route)


class NameConflict(Exception):
    """A child's name is taken by an object the operator did not create."""


def _ours(obj: dict, t: ResolvedTenant) -> bool:
    """Whether the operator made `obj` (for this tenant): it owns it, or it has applied it
    before (a retained volume claim or token Secret outlives its tenant, and a tenant made
    again under the same name takes them back). Anything else is never adopted."""
    meta = obj["metadata"]
    return any(o.get("uid") == t.uid for o in meta.get("ownerReferences") or []) or \
        any(m.get("manager") == FIELD_MANAGER for m in meta.get("managedFields") or [])


def _stamped(obj: dict) -> dict:
    """`obj` with a digest of itself as an annotation: when a child already carries the
    digest of what is desired now, any change the apply makes was made by somebody else."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]
    meta = obj["metadata"]
    meta["annotations"] = {**(meta.get("annotations") or {}), DESIRED_DIGEST: digest}
    return obj


def _current(before: dict | None, obj: dict) -> bool:
    """Whether `before` already is `obj`: it carries the same desired digest and every field
    the operator sets holds its value. Then the apply would change nothing and is skipped."""
    if before is None:
        return False
    digest = (before["metadata"].get("annotations") or {}).get(DESIRED_DIGEST)
    return digest == obj["metadata"]["annotations"][DESIRED_DIGEST] and \
        _project(before, obj) == obj


# Fields the API server treats as atomic (a Service's selector and a pod's nodeSelector are
# `mapType=atomic`, a LabelSelector is `structType=atomic`): an apply replaces them whole, so
# a key somebody added is ours to remove and they are compared whole. A key added by hand to
# an ordinary map (labels, annotations) is left alone by an apply, so it is not compared.
ATOMIC_FIELDS = frozenset({"selector", "nodeSelector", "podSelector", "namespaceSelector",
                           "labelSelector"})


def _project(value, shape):
    """`value` cut down to the fields `shape` has (the fields the operator sets)."""
    if isinstance(shape, dict) and isinstance(value, dict):
        return {k: value.get(k) if k in ATOMIC_FIELDS else _project(value.get(k), v)
                for k, v in shape.items()}
    if isinstance(shape, list) and isinstance(value, list) and len(shape) == len(value):
        return [_project(v, s) for v, s in zip(value, shape, strict=True)]
    return value


async def _rival(t: ResolvedTenant, body: dict, claims: ClaimsFn, kube: Kube) -> Claim | None:
    """The tenant that serves this one's host and path first, if any: this one is refused.
    The older tenant wins; creationTimestamp counts whole seconds, so between two made in
    the same second the one whose Ingress exists already wins, then the first by name."""
    if not t.ingress.managed:
        return None
    mine = Claim(body["metadata"].get("creationTimestamp") or "", t.namespace, t.name)
    others = sorted(c for c in claims((t.ingress.host, t.ingress.path))
                    if (c.namespace, c.name) != (t.namespace, t.name) and c.created <= mine.created)
    if not others or others[0].created < mine.created:
        return others[0] if others else None

    async def serving(c: Claim) -> bool:
        return await kube.get(path("Ingress", c.namespace, Names.of(c.name).ingress)) is not None

    for other in others:
        if await serving(other):
            return other
    if await serving(mine):
        return None
    return others[0] if others[0] < mine else None


async def _reconcile(body: dict, kube: Kube, cfg: OperatorConfig, emit: EmitFn,
                     claims: ClaimsFn, now: datetime, rollout: Gate,
                     route: RouteFn | None = None) -> dict:
    t, pending_image = await _settled(resolve(body, cfg), kube, cfg, rollout)
    rival = await _rival(t, body, claims, kube)
    old_status = body.get("status") or {}
    conflicts: list[str] = []
    apply_errors: list[str] = []
    database_problem = None
    serving = t  # what the children run: t, or t still on SQLite while its data moves
    if t.storage.postgres:
        # Before the children: the Deployment reads which keys the connection Secret has.
        t, database_problem = await _database(t, kube, conflicts, apply_errors)
        serving = t
        pvc = await kube.get(path("PersistentVolumeClaim", t.namespace, t.names.pvc))
        if move_pending(t, pvc, pvc is not None and _ours(pvc, t)):
            # The data is still on the volume: the server keeps serving it from there until
            # the database is ready for the copy, then stops for the move.
            serving = on_sqlite(t, 1)
            if not database_problem:
                serving, database_problem = await _move(t, body, kube, emit, now)

    # -- the generated credentials: the token, and the event stream's two ----------------------
    creds = _Credentials(t, body, kube, emit, now, conflicts, apply_errors)
    secret = None
    state: TokenState | None = None
    if not t.token.own:
        secret = await kube.get(path("Secret", t.namespace, t.token.secret_name))
        token_present = bool(secret_data(secret).get(t.token.key, "").strip())
    else:
        # The tenant had a token (its status says so) whose Secret is gone: Entra holds it.
        state = await creds.keep(TOKEN, t.names.secret, t.rotation, had="token" in old_status,
                                 acknowledge=t.replaced_ack)
        token_present = state is not None
    receiver = signing = None
    push_missing = None
    if t.events:
        had = old_status.get("events") or {}
        receiver = await creds.keep(EVENTS_TOKEN, t.events.token_secret,
                                    t.events.token_rotation, had="receiverToken" in had)
        signing = await creds.keep(SIGNING_KEY, t.events.signing_key_secret,
                                   t.events.key_rotation, had="signingKey" in had)
        push_missing = await _push_authorization_missing(t, kube)
    transient = creds.transient

    # -- the children ---------------------------------------------------------------------------
    applied: dict[str, dict] = {}
    wanted = [c for c in children(serving) if not (rival and c["kind"] == "Ingress")]
    if t.paused:
        for obj in wanted:
            got = await kube.get(path(obj["kind"], t.namespace, obj["metadata"]["name"]))
            if got:
                applied[obj["kind"]] = got
    elif not conflicts:  # a taken token Secret name: no server may run on it
        for obj in wanted:
            try:
                await _apply_child(_stamped(obj), t, body, kube, emit, applied)
            except NameConflict as e:
                conflicts.append(str(e))
            except KubeError as e:
                if e.status in (400, 403, 422):
                    apply_errors.append(str(e))
                else:  # transient (5xx, conflicts): shown now, retried by kopf and the resync
                    apply_errors.append(str(e))
                    transient = transient or e
        # Children the spec no longer wants (Ingress or NetworkPolicy turned off), if ours.
        wanted_kinds = {o["kind"] for o in wanted}
        for kind in ("Ingress", "NetworkPolicy", "PodDisruptionBudget"):
            if kind not in wanted_kinds:
                child_path = path(kind, t.namespace, t.names.of_kind(kind))
                current = await kube.get(child_path)
                if current and _ours(current, t):
                    await kube.delete(child_path)

    # -- observe and write status ---------------------------------------------------------------
    pods = await kube.list(path("Pod", t.namespace), t.pod_selector)
    if rolled(pods, t.server.image):
        rollout.settled((t.namespace, t.name), cfg.rollout.batch_size)
    ing = applied.get("Ingress")
    class_exists = None
    class_name = ((ing or {}).get("spec") or {}).get("ingressClassName")
    if class_name:
        class_exists = await kube.get(
            f"/apis/networking.k8s.io/v1/ingressclasses/{class_name}") is not None
    tls_problem = await _tls_problem(t, kube, now) if ing else None
    if serving.storage.postgres and not database_problem and \
            not available(applied.get("Deployment")):
        database_problem = await _pod_database_problem(pods)
    observed = Observed(url=t.url, token_present=token_present,
                        token_missing=None if token_present else _missing_token(t, secret),
                        deployment=applied.get("Deployment"), pods=pods,
                        pvc=applied.get("PersistentVolumeClaim"),
                        ingress_wanted=t.ingress.wanted,
                        ingress=ing, ingress_class_exists=class_exists,
                        tls_problem=tls_problem, apply_errors=apply_errors,
                        conflicts=conflicts,
                        host_conflict=None if rival is None else (
                            f"{t.ingress.host}{t.ingress.path} is served by tenant "
                            f"{rival.namespace}/{rival.name}, which claimed it first; this "
                            "tenant gets no Ingress until the host or path differs"),
                        token_replaced_at=state.replaced_at if state else None,
                        events_problem=push_missing, database_problem=database_problem)
    previous_until = state.previous_valid_until if state else None

    def conditions_now() -> list[dict]:
        return conditions(observed, paused=t.paused, previous_valid_until=previous_until,
                          previous_count=len(state.previous) if state else 0,
                          generation=t.generation, previous=old_status.get("conditions"),
                          now=now)

    conds = conditions_now()
    if route is not None:
        # Entra's Test Connection through the ingress controller (route.py), only once all
        # else is ready: before that the conditions already say what is wrong.
        ready = conds[0]["status"] == "True" and t.ingress.managed and t.url
        observed.route_problem = route((t.namespace, t.name), RouteTarget(
            t.url, t.namespace, t.token.secret_name, t.token.key) if ready else None)
        if observed.route_problem:
            conds = conditions_now()
    status: dict = {
        "observedGeneration": t.generation,
        "tokenSecretRef": {"name": t.token.secret_name, "key": t.token.key},
        "conditions": conds,
    }
    if t.url:
        status["url"] = t.url
    status["storage"] = storage_status(t)
    status["server"] = {"image": t.server.image,
                        **({"pendingImage": pending_image} if pending_image else {})}
    if state:
        status["token"] = {**_lifecycle(state, "previousTokens"),
                           **({"replacedAt": fmt(state.replaced_at)} if state.replaced_at
                              else {})}
    if t.events:
        # What the reconcile knows of the stream; activity.py adds what the server reports.
        status["events"] = {
            "enabled": True, "delivery": "push" if t.events.push else "poll",
            "receiverSecretRef": {"name": t.events.token_secret, "key": TOKEN_KEY},
            "signingKeySecretRef": {"name": t.events.signing_key_secret, "key": SIGNING_KEY_KEY},
            **({"receiverToken": _lifecycle(receiver, "previousTokens")} if receiver else {}),
            **({"signingKey": _lifecycle(signing, "previousKeys")} if signing else {})}
    was_paused = {c["type"]: c["status"] for c in old_status.get("conditions") or []
                  }.get("Paused") == "True"
    if t.paused and old_status.get("conditions") and not was_paused:
        await emit(body, Event("Paused", "Reconciliation of this tenant's children is paused"))
    elif not t.paused and was_paused:
        await emit(body, Event("Resumed", "Reconciliation of this tenant's children resumed"))
    # kopf keeps its own progress under status.kopf, and the activity poll (activity.py) its
    # figures under status.activity and (while the stream is on) status.events; the rest is
    # ours, patched to exactly `status` and not written at all when nothing changed.
    ours = {k: v for k, v in old_status.items() if k not in OTHER_STATUS}
    if t.events and isinstance(ours.get("events"), dict):
        ours["events"] = {k: v for k, v in ours["events"].items() if k not in EVENTS_OBSERVED}
    patch = merge_patch(ours, status)
    if patch:
        await kube.patch_status(KIND, t.namespace, t.name, patch)
        log.info("status written", extra={"tenant": f"{t.namespace}/{t.name}",
                                          "ready": status["conditions"][0]["status"],
                                          "reason": status["conditions"][0]["reason"]})
    log.debug("reconciled", extra={"tenant": f"{t.namespace}/{t.name}", "paused": t.paused})
    if transient is not None:
        raise transient  # after the status says what failed: kopf retries with its back-off
    return status


async def _settled(t: ResolvedTenant, kube: Kube, cfg: OperatorConfig, rollout: Gate
                   ) -> tuple[ResolvedTenant, str | None]:
    """`t` as what already runs decides it: the existing claim's size and class where the
    tenant has only defaults, and the server's image by the rollout policy (rollout.py);
    with the default image it is held back from, if any."""
    pvc = await kube.get(path("PersistentVolumeClaim", t.namespace, t.names.pvc))
    if pvc is not None and _ours(pvc, t):
        t = with_claim(t, pvc)
    deployment = await kube.get(path("Deployment", t.namespace, t.names.deployment))
    running = _image(deployment) if deployment is not None and _ours(deployment, t) else None
    key = (t.namespace, t.name)
    choice = choose_image(t.server.spec_image, t.server.default_image, running, cfg.rollout,
                          t.server.update_requested,
                          admit=lambda: not t.paused and rollout.admit(
                              key, cfg.rollout.batch_size))
    if t.server.spec_image:
        rollout.settled(key, cfg.rollout.batch_size)  # it follows the default image no more
    return dataclasses.replace(t, server=dataclasses.replace(t.server, image=choice.image)), \
        choice.pending


def _image(deployment: dict) -> str | None:
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get(
        "containers") or [{}]
    return containers[0].get("image")


async def _tls_problem(t: ResolvedTenant, kube: Kube, now: datetime) -> tuple[str, str] | None:
    """What keeps the tenant's certificate from serving its host (certificates.py)."""
    tls = t.ingress.tls
    if tls is None or t.ingress.host is None:
        return None
    if tls.issuer is None:
        secret = await kube.get(path("Secret", t.namespace, tls.secret_name))
        return tls_secret_problem(tls.secret_name, t.ingress.host, secret, now)
    issuer = tls.issuer
    what = f"{issuer.kind} {issuer.name}"
    try:
        certificate = await kube.get(path("Certificate", t.namespace, tls.secret_name))
        served = certificate is not None or await kube.get(CERTIFICATE_API) is not None
        ready = certificate is not None and any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in (certificate.get("status") or {}).get("conditions") or [])
        requests: list[dict] = []
        issuer_obj = None
        if certificate is not None and not ready:
            # Read only while it is not Ready: why it is not.
            uid = certificate["metadata"].get("uid")
            requests = [r for r in await kube.list(
                f"{CERTIFICATE_API}/namespaces/{t.namespace}/certificaterequests")
                if any(o.get("uid") == uid for o in r["metadata"].get("ownerReferences") or [])]
            if issuer.group == "cert-manager.io":
                issuer_obj = await kube.get(
                    f"{CERTIFICATE_API}/clusterissuers/{issuer.name}"
                    if issuer.kind == "ClusterIssuer" else
                    f"{CERTIFICATE_API}/namespaces/{t.namespace}/issuers/{issuer.name}")
    except KubeError as e:
        if e.status != 403:
            raise
        return ("CertificatePending", f"The operator may not read cert-manager's objects "
                f"({e.message}): give it the chart's permissions on cert-manager.io")
    return certificate_problem(tls.secret_name, what, certificate, requests, issuer_obj,
                               served=served)


def _lifecycle(state: TokenState, count: str) -> dict:
    """A generated credential's timestamps for status (never the credential itself)."""
    return {k: v for k, v in (
        ("issuedAt", fmt(state.issued_at)), ("rotatedAt", fmt(state.rotated_at)),
        ("previousValidUntil", fmt(state.previous_valid_until)),
        (count, len(state.previous) or None)) if v}


class _Credentials:
    """Keeps the Secrets the operator generates for one reconcile, collecting what goes wrong
    into the reconcile's lists (a name taken, a refused apply, a transient error)."""

    def __init__(self, t: ResolvedTenant, body: dict, kube: Kube, emit: EmitFn, now: datetime,
                 conflicts: list[str], apply_errors: list[str]) -> None:
        self.t, self.body, self.kube, self.emit, self.now = t, body, kube, emit, now
        self.conflicts, self.apply_errors = conflicts, apply_errors
        self.transient: KubeError | None = None

    async def keep(self, kind: Kind, name: str, rotation: Rotation, had: bool,
                   acknowledge: str | None = None) -> TokenState | None:
        """The credential in Secret `name`: made once, rotated on request, carried over
        otherwise (tokens.next_state). `had`: status says the tenant had one, so a missing
        Secret was deleted. None when there is none, or the name is somebody else's."""
        t = self.t
        secret = await self.kube.get(path("Secret", t.namespace, name))
        if secret is not None and not _ours(secret, t):
            # Never overwrite somebody's Secret, and never run a server on a credential we did
            # not make.
            self.conflicts.append(f"Secret {name} exists and was not created by the operator")
            return None
        existing = TokenState.from_secret(
            secret_data(secret), (secret or {}).get("metadata", {}).get("annotations") or {},
            self.now, kind)
        if t.paused:
            return existing
        state, events = next_state(existing, rotation.request, rotation.overlap, self.now,
                                   kind=kind, lost=existing is None and had,
                                   acknowledge=acknowledge, refuse=rotation.invalid)
        try:
            data = state.data()
            wanted = _stamped(token_secret(t, data, state.annotations()) if kind is TOKEN else
                              generated_secret(t, name, data, state.annotations()))
            if not _current(secret, wanted):
                await self.kube.apply(wanted)
        except KubeError as e:
            state = existing  # nothing changed; whatever the events said did not happen
            events = []
            if e.status in (400, 403, 422):
                self.apply_errors.append(str(e))
            else:
                self.transient = self.transient or e
        for e in events:
            await self.emit(self.body, e)
        return state


async def _push_authorization_missing(t: ResolvedTenant, kube: Kube) -> tuple[str, str] | None:
    """Why events cannot be pushed with the receiver's Authorization header, if they cannot:
    its Secret (spec.events.push.authorizationSecretRef) or key is missing. Only its presence
    is read; the value is the receiver's."""
    if not (t.events and t.events.push and t.events.push.authorization):
        return None
    name, key = t.events.push.authorization
    secret = await kube.get(path("Secret", t.namespace, name))
    if secret is None:
        return ("EventsPushAuthorizationMissing", f"Secret {name} (spec.events.push."
                "authorizationSecretRef) does not exist: events are pushed without the "
                "receiver's Authorization header until it does")
    if not secret_data(secret).get(key, "").strip():
        return ("EventsPushAuthorizationMissing", f"Secret {name} has no key {key!r}, or it "
                "is empty (spec.events.push.authorizationSecretRef): events are pushed without "
                "the receiver's Authorization header until it has")
    return None


def _missing_token(t: ResolvedTenant, secret: dict | None) -> str:
    """What is missing, named, for the TokenMissing condition."""
    if t.token.own:
        return f"Secret {t.names.secret} holds no token"
    if secret is None:
        return f"Secret {t.token.secret_name} (spec.token.existingSecretRef) does not exist"
    return f"Secret {t.token.secret_name} has no key {t.token.key!r}, or it is empty"


async def _apply_child(obj: dict, t: ResolvedTenant, body: dict, kube: Kube, emit: EmitFn,
                       applied: dict) -> None:
    """Apply one child, unless its name is taken by an object that is not ours; report a
    person's change to it (deleted, or a field the operator sets edited) as it is undone."""
    meta = obj["metadata"]
    child_path = path(obj["kind"], meta["namespace"], meta["name"])
    before = await kube.get(child_path)
    if before is not None and not _ours(before, t):
        raise NameConflict(f"{obj['kind']} {meta['name']} exists and was not created by the "
                           "operator; it is left as it is (rename or delete it)")
    if _current(before, obj):
        applied[obj["kind"]] = before
        return
    try:
        after, created = await kube.apply(obj)
    except KubeError as e:
        # A hand edit can leave a list SSA cannot merge (a Service port with a new key but the
        # same name). Stateless children are recreated; the volume claim never is.
        if e.status != 422 or obj["kind"] not in RECREATABLE or before is None:
            raise
        await kube.delete(child_path)
        applied[obj["kind"]], _ = await kube.apply(obj)
        await emit(body, Event("DriftCorrected", f"{obj['kind']} {meta['name']} was changed by "
                               "hand in a way that could not be merged, and has been recreated",
                               "Warning"))
        return
    applied[obj["kind"]] = after
    if before is None:
        if created and _was_made(body):
            await emit(body, Event("ChildRestored", f"{obj['kind']} {meta['name']} was deleted "
                                   "and has been recreated", "Warning"))
        return
    # Drift is a change to a field we set, while the child already held what we want now:
    # not our own update (spec, settings or a new operator), not the controllers' fields.
    same_desire = (before["metadata"].get("annotations") or {}).get(DESIRED_DIGEST) == \
        meta["annotations"][DESIRED_DIGEST]
    if same_desire and _project(before, obj) != _project(after, obj):
        await emit(body, Event("DriftCorrected", f"{obj['kind']} {meta['name']} was changed by "
                               "hand and has been restored", "Warning"))


def _was_made(body: dict) -> bool:
    """Whether the children were made before (a status exists), so a missing one was removed."""
    return "observedGeneration" in (body.get("status") or {})


async def _database(t: ResolvedTenant, kube: Kube, conflicts: list[str],
                    apply_errors: list[str]) -> tuple[ResolvedTenant, tuple[str, str] | None]:
    """A PostgreSQL tenant's database: on a CloudNativePG cluster, its role, database and
    connection Secret are declared (database.py); either way, `t` reading the keys its
    connection Secret has, and why the server cannot use it yet, if it cannot."""
    pg = t.storage.postgres
    secret = await kube.get(path("Secret", t.namespace, pg.secret))
    problem = None
    if pg.cluster is not None:
        c = pg.cluster
        cluster = await kube.get(path("Cluster", c.namespace, c.name))
        served = cluster is not None or await kube.get(CNPG_API) is not None
        problem = cluster_problem(t, cluster, served)
        if secret is not None and not _ours(secret, t):
            conflicts.append(f"Secret {pg.secret} exists and was not created by the operator")
            return t, problem
        if problem is None and not t.paused:
            # The password is made once, then carried over from the tenant's Secret.
            password = secret_data(secret).get("password") or new_password()
            try:
                for obj in cluster_objects(t, password):
                    before = await kube.get(path(obj["kind"], c.namespace,
                                                 obj["metadata"]["name"]))
                    if before is not None and not _ours(before, t):
                        conflicts.append(f"{obj['kind']} {obj['metadata']['name']} in "
                                         f"namespace {c.namespace} exists and was not created "
                                         "by the operator")
                        return t, problem
                    if not _current(before, _stamped(obj)):
                        before, _ = await kube.apply(obj)
                    if obj["kind"] != "Secret":
                        problem = problem or applied_problem(obj["kind"], before)
                wanted = _stamped(generated_secret(t, pg.secret, connection_data(t, password),
                                                   {}))
                if not _current(secret, wanted):
                    secret, _ = await kube.apply(wanted)
            except KubeError as e:
                apply_errors.append(str(e))
    t = with_connection(t, secret)
    return t, problem or connection_problem(t, secret)


async def _pod_database_problem(pods: list[dict]) -> tuple[str, str] | None:
    """What an unready server pod's /readyz says of its database (database.py)."""
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http, \
                    http.get(f"http://{ip}:{SERVER['port']}/readyz") as r:
                found = readiness_problem(await r.json(content_type=None))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            continue
        if found:
            return found
    return None


async def _move(t: ResolvedTenant, body: dict, kube: Kube, emit: EmitFn, now: datetime
                ) -> tuple[ResolvedTenant, tuple[str, str] | None]:
    """One step of moving the tenant's data from its volume to PostgreSQL (move.py): what
    the children should run now, and the condition's (reason, message)."""
    job = await kube.get(path("Job", t.namespace, job_name(t)))
    outcome = job_outcome(job)
    if outcome == "succeeded":
        await kube.annotate("PersistentVolumeClaim", t.namespace, t.names.pvc,
                            {MOVED_ANNOTATION: fmt(now)})
        await emit(body, Event("StorageMoved", f"The data was copied from volume claim "
                               f"{t.names.pvc} to PostgreSQL and the server runs on it; the "
                               "claim is kept until it is deleted"))
        return t, None
    if outcome == "failed":
        pods = await kube.list(path("Pod", t.namespace), f"job-name={job_name(t)}")
        return on_sqlite(t, 1), ("StorageMoveFailed", failure_message(t, pods))
    if outcome is None and not await kube.list(path("Pod", t.namespace), t.pod_selector):
        # The SQLite server has stopped: its volume is free and nothing writes to it.
        deployment = next(c for c in children(t) if c["kind"] == "Deployment")
        await kube.apply(move_job(t, deployment))
        await emit(body, Event("StorageMoving", f"Copying the data from volume claim "
                               f"{t.names.pvc} to PostgreSQL (Job {job_name(t)})"))
    return on_sqlite(t, 0), ("StorageMoving", "Moving the data from the volume to PostgreSQL: "
                             "the server is stopped meanwhile and Entra's requests get 503, "
                             "which it retries")
