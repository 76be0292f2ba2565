"""The one idempotent reconcile of a tenant: generated Secrets, children, status.

Side effects live here. The tenant is resolved once (tenant.py); what its children, token and
status should be is computed by the pure functions in desired.py, tokens.py and status.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import NamedTuple

from . import KIND
from .activity import EVENTS_OBSERVED
from .config import OperatorConfig
from .desired import children, generated_secret, token_secret
from .keys import DESIRED_DIGEST, SIGNING_KEY_KEY, TOKEN_KEY
from .kube import FIELD_MANAGER, Kube, KubeError, path, secret_data
from .status import Observed, conditions, merge_patch
from .tenant import Names, ResolvedTenant, Rotation, resolve
from .tokens import EVENTS_TOKEN, SIGNING_KEY, TOKEN, Event, Kind, TokenState, fmt, next_state

OTHER_STATUS = frozenset({"kopf", "activity"})  # status keys a reconcile leaves alone
RECREATABLE = frozenset({"Deployment", "Service", "Ingress", "NetworkPolicy"})
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
                    now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> dict:
    """Bring one tenant's children to their desired state and write its status.

    Serialised per tenant: create/update handlers, child events and the periodic resync may
    all call it at once. Returns the status it wrote (for tests and metrics).
    """
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    async with locks.hold(key):
        # Re-read: the body a child event carries may be stale by the time the lock is ours.
        fresh = await kube.get(path(KIND, *key))
        if fresh is None or fresh["metadata"].get("deletionTimestamp"):
            return {}
        return await _reconcile(fresh, kube, cfg, emit, claims, now())


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


def _project(value, shape):
    """`value` cut down to the fields `shape` has (the fields the operator sets)."""
    if isinstance(shape, dict) and isinstance(value, dict):
        return {k: _project(value.get(k), v) for k, v in shape.items()}
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
                     claims: ClaimsFn, now: datetime) -> dict:
    t = resolve(body, cfg)
    rival = await _rival(t, body, claims, kube)
    old_status = body.get("status") or {}
    conflicts: list[str] = []
    apply_errors: list[str] = []

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
    wanted = [c for c in children(t) if not (rival and c["kind"] == "Ingress")]
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
        for kind in ("Ingress", "NetworkPolicy"):
            if kind not in wanted_kinds:
                child_path = path(kind, t.namespace, t.names.of_kind(kind))
                current = await kube.get(child_path)
                if current and _ours(current, t):
                    await kube.delete(child_path)

    # -- observe and write status ---------------------------------------------------------------
    pods = await kube.list(path("Pod", t.namespace), t.pod_selector)
    ing = applied.get("Ingress")
    class_exists = None
    class_name = ((ing or {}).get("spec") or {}).get("ingressClassName")
    if class_name:
        class_exists = await kube.get(
            f"/apis/networking.k8s.io/v1/ingressclasses/{class_name}") is not None
    tls_exists = None
    tls = t.ingress.tls
    if ing and tls and not tls.issuer:
        tls_exists = await kube.get(path("Secret", t.namespace, tls.secret_name)) is not None
    observed = Observed(url=t.url, token_present=token_present,
                        token_missing=None if token_present else _missing_token(t, secret),
                        deployment=applied.get("Deployment"), pods=pods,
                        pvc=applied.get("PersistentVolumeClaim"),
                        ingress_wanted=t.ingress.wanted,
                        ingress=ing, ingress_class_exists=class_exists,
                        tls_secret_exists=tls_exists, apply_errors=apply_errors,
                        conflicts=conflicts,
                        host_conflict=None if rival is None else (
                            f"{t.ingress.host}{t.ingress.path} is served by tenant "
                            f"{rival.namespace}/{rival.name}, which claimed it first; this "
                            "tenant gets no Ingress until the host or path differs"),
                        token_replaced_at=state.replaced_at if state else None,
                        events_problem=push_missing)
    previous_until = state.previous_valid_until if state else None
    status: dict = {
        "observedGeneration": t.generation,
        "tokenSecretRef": {"name": t.token.secret_name, "key": t.token.key},
        "conditions": conditions(observed, paused=t.paused, previous_valid_until=previous_until,
                                 previous_count=len(state.previous) if state else 0,
                                 generation=t.generation, previous=old_status.get("conditions"),
                                 now=now),
    }
    if t.url:
        status["url"] = t.url
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
