"""kopf wiring: every trigger calls the same idempotent reconcile.

Triggers: tenant create / resume / update, any event of a labelled child (a deletion or a hand
edit is repaired, a child's status change updates the tenant's conditions), a periodic resync,
and a wake-up at each previous token's (or event signing key's) deadline. No timers or daemons
(kopf would put a finalizer on every tenant for them, and namespace deletion would hang
whenever the operator is down) and no delete handler: ownerReferences and the garbage
collector remove the children.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from datetime import UTC, datetime

import kopf

from . import GROUP, KIND, PLURAL, VERSION, activity, metrics
from .config import is_glob, metrics_host_port
from .keys import INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from .kube import path
from .reconcile import CERTIFICATE_API, Claim, reconcile
from .route import RouteChecker
from .status import next_deadline
from .tenant import ResolvedTenant, references, resolve
from .tokens import Event

log = logging.getLogger("joyn_operator")
CHILD_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}
# The memo (kopf.Memo, built by main.run before kopf starts) holds all the operator's state:
# config, login, kube (a CachedKube reading from cache, the watches' objects), locks (per
# tenant), queued and again (the coalescing of reconciles), gate (their concurrency),
# deadlines (a task per tenant in a token overlap), routes (the tenant_routes index), resync
# and activity (the periodic tasks). kopf gives each object a shallow copy, so all share these.


# Reconciles at once, over all tenants: enough to keep the API server busy, few enough that a
# restart with hundreds of tenants queues them instead of opening hundreds of requests.
CONCURRENT_RECONCILES = 16


async def _run(body: dict, memo: kopf.Memo) -> None:
    """Reconcile a tenant, coalescing: a request that arrives while one runs or waits for the
    same tenant only marks it to run once more afterwards (a new tenant's children send a
    burst of events; each would otherwise be a whole reconcile)."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if key in memo.queued:
        memo.again.add(key)
        return
    memo.queued.add(key)
    try:
        while True:
            memo.again.discard(key)
            async with memo.gate:
                await _reconcile_once(body, key, memo)
            if key not in memo.again:
                return
    finally:
        memo.queued.discard(key)


async def _reconcile_once(body: dict, key: tuple[str, str], memo: kopf.Memo) -> None:
    async def emit(obj: dict, e: Event) -> None:
        # Posted through our own client, not kopf.event: kopf posts only from inside its
        # handler contexts, and the resync and deadline wake-ups run outside them.
        try:
            await memo.kube.post_event(obj, e.type, e.reason, e.message)
        except Exception as err:  # an event is best effort; status carries the durable state
            log.warning("event not posted", extra={"reason": e.reason, "error": str(err)})

    started = time.perf_counter()
    try:
        status = await reconcile(body, memo.kube, memo.config, emit, memo.locks,
                                 claims=lambda route: memo.routes.get(route, ()),
                                 rollout=memo.rollout,
                                 route=memo.route_check.problem if memo.get("route_check")
                                 else None)
    except Exception:
        metrics.observe(key, {}, started, ok=False)
        raise
    finally:
        # Tenants waiting for a place in a server image rollout that one has just freed.
        for namespace, name in memo.rollout.woken():
            task = asyncio.create_task(_run({"metadata": {"namespace": namespace,
                                                          "name": name}}, memo))
            memo.wakeups.add(task)
            task.add_done_callback(memo.wakeups.discard)
    metrics.observe(key, status, started, ok=True)
    _schedule_deadline(key, status, memo)


def _schedule_deadline(key: tuple[str, str], status: dict, memo: kopf.Memo) -> None:
    """Wake up when a previous token or signing key expires, so it is dropped on time. A
    tenant that is gone (empty status) or has no previous one keeps no task."""
    old = memo.deadlines.pop(key, None)
    if old:
        old.cancel()
    until = next_deadline(status)
    if until is None:
        return
    delay = max((until - datetime.now(UTC)).total_seconds(), 0) + 1

    async def wake() -> None:
        await asyncio.sleep(delay)
        memo.deadlines.pop(key, None)
        # reconcile() reads the tenant afresh; a gone one is a no-op.
        await _run({"metadata": {"namespace": key[0], "name": key[1]}}, memo)

    memo.deadlines[key] = asyncio.create_task(wake())


@kopf.on.login()
async def login(memo: kopf.Memo, **_) -> kopf.ConnectionInfo:
    """kopf asks when its credentials expired (ours are due again) or were refused with a 401
    (then ours are loaded afresh, so a rewritten token file or a new exec token is used)."""
    await memo.login.refresh(force=not memo.login.due)
    return memo.login.connection_info()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, tenant_routes: kopf.Index,
                    **_) -> None:
    # Our own prefix and finalizer name, fixed from day one (changing them later would make
    # kopf treat every tenant as new).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=f"operator.{GROUP}")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=f"operator.{GROUP}", key="last-handled-configuration")
    settings.persistence.finalizer = f"operator.{GROUP}/finalizer"
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.posting.level = logging.WARNING  # our own Events are posted explicitly
    # kopf's scanning watches CRDs and namespaces cluster-wide; only namespace globs need it,
    # so without them the operator needs no permission on either (least privilege).
    settings.scanning.disabled = not memo.config.namespace_globs
    # kopf resolves its watched resources once, after the start-up handlers: a watch declared
    # on a resource the cluster does not serve would warn on every start of an operator in a
    # cluster without cert-manager, which is a supported setup.
    # Once per process, even when kopf retries this handler after a later step failed.
    if not memo.get("certificates_watched"):
        if await memo.kube.get(CERTIFICATE_API) is not None:
            kopf.on.event("cert-manager.io", "v1", "certificates")(referenced_certificate)
            memo.certificates_watched = True
        else:
            log.info("cert-manager is not installed (%s is not served): its Certificates are "
                     "read by each reconcile and not watched until a restart", CERTIFICATE_API)
    if memo.config.metrics_address:
        metrics.serve(*metrics_host_port(memo.config.metrics_address))
    # The live index (filled before any tenant is handled), for the reconciles that the resync
    # and the deadline wake-ups run outside kopf's handlers.
    memo.routes = tenant_routes
    memo.resync = asyncio.create_task(_resync(memo))
    if memo.config.route_check_address:
        async def wake(key: tuple[str, str]) -> None:
            await _run({"metadata": {"namespace": key[0], "name": key[1]}}, memo)
        memo.route_check = RouteChecker(memo.config, memo.kube, wake)
        memo.route_check_task = asyncio.create_task(memo.route_check.run())
    if memo.config.activity_seconds:
        memo.activity = asyncio.create_task(activity.poll(memo))


def in_scope(namespace: str, patterns: tuple[str, ...]) -> bool:
    """Whether the operator watches `namespace` (kopf's namespace patterns are globs)."""
    return not patterns or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def resync_urls(patterns: tuple[str, ...]) -> list[str]:
    """Where the resync lists tenants: each watched namespace, or the whole cluster when all
    are watched or a pattern is a glob (the listed tenants are then filtered by in_scope)."""
    if not patterns or any(is_glob(p) for p in patterns):
        return [f"/apis/{GROUP}/{VERSION}/{PLURAL}"]
    return [path(KIND, ns) for ns in patterns]


async def _resync(memo: kopf.Memo) -> None:
    """Reconcile every tenant now and then, as a safety net for missed events."""
    patterns = memo.config.watch_namespaces
    while True:
        await asyncio.sleep(memo.config.resync_seconds)
        for url in resync_urls(patterns):
            try:
                tenants = await memo.kube.list(url)
            except Exception as e:  # keep resyncing; the next round retries
                log.warning("resync list failed", extra={"error": str(e)})
                continue
            for body in tenants:
                if not in_scope(body["metadata"]["namespace"], patterns):
                    continue
                try:
                    await _run(body, memo)
                except Exception as e:  # one broken tenant must not stop the others
                    log.warning("resync reconcile failed", extra={
                        "tenant": f"{body['metadata']['namespace']}/{body['metadata']['name']}",
                        "error": str(e)})


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_) -> None:
    for task in [memo.get("resync"), memo.get("activity"), memo.get("route_check_task"),
                 *memo.deadlines.values()]:
        if task:
            task.cancel()
    await memo.kube.close()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def tenant_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    await _run(dict(body), memo)


# -- what tenants refer to, and share -----------------------------------------------------------
# Two kopf indices over all watched tenants (kopf fills them before any handler runs and keeps
# them current from its own watch): what each tenant needs but does not make, so it recovers
# the moment that appears; and which tenants claim each host and path, so only one serves it.

def _resolved(body: kopf.Body, memo: kopf.Memo) -> ResolvedTenant | None:
    try:
        return resolve(dict(body), memo.config)
    except (KeyError, ValueError):  # a value the CRD should have refused: the reconcile says so
        return None


@kopf.index(GROUP, VERSION, PLURAL)
def tenant_refs(body: kopf.Body, memo: kopf.Memo, **_) -> dict:
    t = _resolved(body, memo)
    return {} if t is None else {ref: (t.namespace, t.name) for ref in references(t)}


@kopf.index(GROUP, VERSION, PLURAL)
def tenant_routes(body: kopf.Body, memo: kopf.Memo, **_) -> dict:
    t = _resolved(body, memo)
    if t is None or not t.ingress.managed:
        return {}
    return {(t.ingress.host, t.ingress.path): Claim(
        body["metadata"].get("creationTimestamp") or "", t.namespace, t.name)}


async def _reconcile_all(keys, memo: kopf.Memo) -> None:
    for namespace, name in set(keys):
        tenant = await memo.kube.get(path(KIND, namespace, name))
        if tenant is not None:
            await _run(tenant, memo)


@kopf.on.event("", "v1", "secrets")
async def referenced_secret(event: dict, memo: kopf.Memo, tenant_refs: kopf.Index,
                            **_) -> None:
    """A bring-your-own token Secret, a TLS Secret, an event push authorization Secret or a
    PostgreSQL connection Secret appeared, changed or went. (Other Secrets are not kept: the
    operator reads none of them.)"""
    meta = (event.get("object") or {}).get("metadata") or {}
    tenants = tenant_refs.get(("Secret", meta.get("namespace"), meta.get("name")), ())
    if tenants:
        memo.cache.seen(event.get("type"), event["object"])
        await _reconcile_all(tenants, memo)


async def referenced_certificate(event: dict, memo: kopf.Memo, tenant_refs: kopf.Index,
                                 **_) -> None:
    """The Certificate cert-manager's ingress-shim made for a tenant's Ingress changed (it
    became Ready, or failed). Registered at start-up only where cert-manager is installed
    (`configure`); CRDs installed later are watched after a restart, and read by every
    reconcile until then."""
    meta = (event.get("object") or {}).get("metadata") or {}
    tenants = tenant_refs.get(("Certificate", meta.get("namespace"), meta.get("name")), ())
    if tenants:
        memo.cache.seen(event.get("type"), event["object"])
        await _reconcile_all(tenants, memo)


@kopf.on.event("networking.k8s.io", "v1", "ingressclasses")
async def referenced_ingress_class(event: dict, memo: kopf.Memo, tenant_refs: kopf.Index,
                                   **_) -> None:
    memo.cache.seen(event.get("type"), event["object"])
    meta = (event.get("object") or {}).get("metadata") or {}
    await _reconcile_all(tenant_refs.get(("IngressClass", "", meta.get("name")), ()), memo)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def tenant_event(event: dict, memo: kopf.Memo, tenant_routes: kopf.Index, **_) -> None:
    """Every tenant as the watch shows it, for the reconcile to read; a deleted one frees its
    host and path for a tenant that was refused them."""
    memo.cache.seen(event.get("type"), event["object"])
    if event.get("type") != "DELETED":
        return
    if memo.get("route_check"):
        meta = event["object"]["metadata"]
        memo.route_check.forget((meta["namespace"], meta["name"]))
    t = _resolved(event["object"], memo)
    if t is not None and t.ingress.managed:
        claims = tenant_routes.get((t.ingress.host, t.ingress.path), ())
        await _reconcile_all(((c.namespace, c.name) for c in claims), memo)


async def _child_event(event: dict, memo: kopf.Memo, **_) -> None:
    obj = event.get("object") or {}
    if not memo.cache.seen(event.get("type"), obj):
        return  # an older copy, or a pod change no condition reads
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(INSTANCE_LABEL)
    if not name or not meta.get("namespace"):
        return
    tenant = await memo.kube.get(path(KIND, meta["namespace"], name))
    if tenant is not None:
        await _run(tenant, memo)


for _group, _version, _plural in (("", "v1", "secrets"), ("", "v1", "services"),
                                  ("", "v1", "persistentvolumeclaims"), ("", "v1", "pods"),
                                  ("apps", "v1", "deployments"),
                                  ("networking.k8s.io", "v1", "ingresses"),
                                  ("networking.k8s.io", "v1", "networkpolicies"),
                                  ("policy", "v1", "poddisruptionbudgets")):
    kopf.on.event(_group, _version, _plural, labels=CHILD_LABELS)(_child_event)
