"""The one idempotent reconcile of a tenant: token Secret, children, status.

Side effects live here. The tenant is resolved once (tenant.py); what its children, token and
status should be is computed by the pure functions in desired.py, tokens.py and status.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from . import KIND
from .config import OperatorConfig
from .desired import children, token_secret
from .keys import MANAGED_BY, MANAGED_BY_LABEL
from .kube import Kube, KubeError, path
from .status import Observed, conditions
from .tenant import resolve
from .tokens import Event, TokenState, fmt, next_state

RECREATABLE = frozenset({"Deployment", "Service", "Ingress", "NetworkPolicy"})
log = logging.getLogger("joyn_operator")

# An event sink: (tenant body, Event) -> awaitable. Kube.post_event in the operator.
EmitFn = Callable[[dict, Event], Awaitable[None]]


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


def _decode(secret: dict | None) -> dict[str, str]:
    data = (secret or {}).get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


async def reconcile(body: dict, kube: Kube, cfg: OperatorConfig, emit: EmitFn,
                    locks: KeyedLocks,
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
        return await _reconcile(fresh, kube, cfg, emit, now())


async def _reconcile(body: dict, kube: Kube, cfg: OperatorConfig, emit: EmitFn,
                     now: datetime) -> dict:
    t = resolve(body, cfg)
    old_status = body.get("status") or {}
    first = "observedGeneration" not in old_status
    spec_changed = old_status.get("observedGeneration") != t.generation

    # -- the token ------------------------------------------------------------------------------
    secret = await kube.get(path("Secret", t.namespace, t.token.secret_name))
    state: TokenState | None = None
    if not t.token.own:
        token_present = bool(_decode(secret).get(t.token.key, "").strip())
    else:
        existing = TokenState.from_secret(_decode(secret),
                                          (secret or {}).get("metadata", {}).get("annotations")
                                          or {}, now)
        state = existing
        if not t.paused:
            state, events = next_state(existing, t.rotate_request, t.token.previous_valid_for,
                                       now)
            await kube.apply(token_secret(t, state.current, state.previous, state.annotations()))
            for e in events:
                await emit(body, e)
            if secret is None and existing is None and not first:
                await emit(body, Event("ChildRestored", f"Secret {t.names.secret} was missing "
                                       "and has been recreated with a new token", "Warning"))
        token_present = state is not None

    # -- the children ---------------------------------------------------------------------------
    applied: dict[str, dict] = {}
    apply_errors: list[str] = []
    wanted = children(t)
    if t.paused:
        for obj in wanted:
            got = await kube.get(path(obj["kind"], t.namespace, obj["metadata"]["name"]))
            if got:
                applied[obj["kind"]] = got
    else:
        for obj in wanted:
            try:
                await _apply_child(obj, body, kube, emit, applied, first, spec_changed)
            except KubeError as e:
                if e.status not in (400, 403, 422):
                    raise  # transient (5xx, conflicts): kopf and the resync retry
                apply_errors.append(str(e))
        # Children the spec no longer wants (Ingress or NetworkPolicy turned off), if ours.
        wanted_kinds = {o["kind"] for o in wanted}
        for kind in ("Ingress", "NetworkPolicy"):
            if kind not in wanted_kinds:
                child_path = path(kind, t.namespace, t.names.of_kind(kind))
                current = await kube.get(child_path)
                if current and (current["metadata"].get("labels") or {}).get(
                        MANAGED_BY_LABEL) == MANAGED_BY:
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
                        deployment=applied.get("Deployment"), pods=pods,
                        pvc=applied.get("PersistentVolumeClaim"),
                        ingress_wanted=t.ingress.wanted,
                        ingress=ing, ingress_class_exists=class_exists,
                        tls_secret_exists=tls_exists, apply_errors=apply_errors)
    previous_until = state.previous_valid_until if state and state.previous else None
    status: dict = {
        "observedGeneration": t.generation,
        "tokenSecretRef": {"name": t.token.secret_name, "key": t.token.key},
        "conditions": conditions(observed, paused=t.paused, previous_valid_until=previous_until,
                                 generation=t.generation, previous=old_status.get("conditions"),
                                 now=now),
    }
    if t.url:
        status["url"] = t.url
    if state:
        status["token"] = {k: v for k, v in (
            ("issuedAt", fmt(state.issued_at)), ("rotatedAt", fmt(state.rotated_at)),
            ("previousValidUntil", fmt(previous_until))) if v}
    was_paused = {c["type"]: c["status"] for c in old_status.get("conditions") or []
                  }.get("Paused") == "True"
    if t.paused and old_status.get("conditions") and not was_paused:
        await emit(body, Event("Paused", "Reconciliation of this tenant's children is paused"))
    elif not t.paused and was_paused:
        await emit(body, Event("Resumed", "Reconciliation of this tenant's children resumed"))
    comparable = {k: v for k, v in old_status.items() if k in status}
    if comparable != status or set(old_status) - set(status) - {"kopf"}:
        patch = {**status, **{k: None for k in set(old_status) - set(status) - {"kopf"}}}
        await kube.patch_status(KIND, t.namespace, t.name, patch)
        log.info("status written", extra={"tenant": f"{t.namespace}/{t.name}",
                                          "ready": status["conditions"][0]["status"],
                                          "reason": status["conditions"][0]["reason"]})
    log.debug("reconciled", extra={"tenant": f"{t.namespace}/{t.name}", "paused": t.paused})
    return status


async def _apply_child(obj: dict, body: dict, kube: Kube, emit: EmitFn, applied: dict,
                       first: bool, spec_changed: bool) -> None:
    """Apply one child; restore and report drift (a recreated or hand-edited child)."""
    meta = obj["metadata"]
    child_path = path(obj["kind"], meta["namespace"], meta["name"])
    before = None if first else await kube.get(child_path)
    try:
        after, created = await kube.apply(obj)
    except KubeError as e:
        # A hand edit can leave a list SSA cannot merge (a Service port with a new key but the
        # same name). Stateless children are recreated; the volume claim and the token Secret
        # never are.
        if e.status != 422 or obj["kind"] not in RECREATABLE or before is None:
            raise
        await kube.delete(child_path)
        applied[obj["kind"]], _ = await kube.apply(obj)
        await emit(body, Event("DriftCorrected", f"{obj['kind']} {meta['name']} was changed by "
                               "hand in a way that could not be merged, and has been recreated",
                               "Warning"))
        return
    applied[obj["kind"]] = after
    if first:
        return
    if created:
        await emit(body, Event("ChildRestored", f"{obj['kind']} {meta['name']} was deleted and "
                               "has been recreated", "Warning"))
    elif before is not None and not spec_changed and \
            before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]:
        await emit(body, Event("DriftCorrected", f"{obj['kind']} {meta['name']} was changed by "
                               "hand and has been restored", "Warning"))
