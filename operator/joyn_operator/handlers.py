"""kopf wiring: every trigger calls the same idempotent reconcile.

Triggers: tenant create / resume / update, any event of a labelled child (a deletion or a hand
edit is repaired, a child's status change updates the tenant's conditions), a periodic resync,
and a wake-up at each previous token's deadline. No timers or daemons (kopf would put a
finalizer on every tenant for them, and namespace deletion would hang whenever the operator is
down) and no delete handler: ownerReferences and the garbage collector remove the children.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import time
from datetime import UTC, datetime

import kopf

from . import GROUP, KIND, PLURAL, VERSION, metrics
from .config import OperatorConfig
from .desired import MANAGED_BY
from .kube import Kube, path
from .reconcile import reconcile
from .tokens import Event, parse_time

log = logging.getLogger("joyn_operator")
CHILD_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
STATE: dict = {}  # kube client, config, background tasks; set at start-up


async def _emit(body: dict, e: Event) -> None:
    # Posted through our own client, not kopf.event: kopf posts only from inside its handler
    # contexts, and the resync and deadline wake-ups run outside them.
    try:
        await STATE["kube"].post_event(body, e.type, e.reason, e.message)
    except Exception as err:  # an event is best effort; status carries the durable state
        log.warning("event not posted", extra={"reason": e.reason, "error": str(err)})


async def _run(body: dict) -> None:
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    started = time.perf_counter()
    try:
        status = await reconcile(body, STATE["kube"], STATE["config"], _emit)
    except Exception:
        metrics.observe(key, {}, started, ok=False)
        raise
    metrics.observe(key, status, started, ok=True)
    _schedule_deadline(body, status)


def _schedule_deadline(body: dict, status: dict) -> None:
    """Wake up when the previous token expires, so it is dropped on time."""
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    old = STATE["deadlines"].pop(key, None)
    if old:
        old.cancel()
    until = parse_time((status.get("token") or {}).get("previousValidUntil"))
    if until is None:
        return
    delay = max((until - datetime.now(UTC)).total_seconds(), 0) + 1

    async def wake() -> None:
        await asyncio.sleep(delay)
        STATE["deadlines"].pop(key, None)
        await _run(body)

    STATE["deadlines"][key] = asyncio.create_task(wake())


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_) -> None:
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
    STATE["config"] = OperatorConfig.from_env()
    metrics.serve(os.environ.get("JOYN_OPERATOR_METRICS_HOST", "0.0.0.0"),  # noqa: S104
                  int(os.environ.get("JOYN_OPERATOR_METRICS_PORT", "8080")))
    STATE["kube"] = Kube.from_environment()
    STATE["deadlines"] = {}
    STATE["resync"] = asyncio.create_task(_resync())


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def in_scope(namespace: str, patterns: tuple[str, ...]) -> bool:
    """Whether the operator watches `namespace` (kopf's namespace patterns are globs)."""
    return not patterns or any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def resync_urls(patterns: tuple[str, ...]) -> list[str]:
    """Where the resync lists tenants: each watched namespace, or the whole cluster when all
    are watched or a pattern is a glob (the listed tenants are then filtered by in_scope)."""
    if not patterns or any(_is_glob(p) for p in patterns):
        return [f"/apis/{GROUP}/{VERSION}/{PLURAL}"]
    return [path(KIND, ns) for ns in patterns]


async def _resync() -> None:
    """Reconcile every tenant now and then, as a safety net for missed events."""
    interval = float(STATE["config"].resync_seconds)
    while True:
        await asyncio.sleep(interval)
        patterns = STATE["config"].watch_namespaces
        for url in resync_urls(patterns):
            try:
                tenants = await STATE["kube"].list(url)
            except Exception as e:  # keep resyncing; the next round retries
                log.warning("resync list failed", extra={"error": str(e)})
                continue
            for body in tenants:
                if not in_scope(body["metadata"]["namespace"], patterns):
                    continue
                try:
                    await _run(body)
                except Exception as e:  # one broken tenant must not stop the others
                    log.warning("resync reconcile failed", extra={
                        "tenant": f"{body['metadata']['namespace']}/{body['metadata']['name']}",
                        "error": str(e)})


@kopf.on.cleanup()
async def cleanup(**_) -> None:
    for task in [STATE.get("resync"), *STATE.get("deadlines", {}).values()]:
        if task:
            task.cancel()
    if STATE.get("kube"):
        await STATE["kube"].close()


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def tenant_changed(body: kopf.Body, **_) -> None:
    await _run(dict(body))


async def _child_event(event: dict, **_) -> None:
    obj = event.get("object") or {}
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get("app.kubernetes.io/instance")
    if not name or not meta.get("namespace"):
        return
    tenant = await STATE["kube"].get(path(KIND, meta["namespace"], name))
    if tenant is not None:
        await _run(tenant)


for _group, _version, _plural in (("", "v1", "secrets"), ("", "v1", "services"),
                                  ("", "v1", "persistentvolumeclaims"), ("", "v1", "pods"),
                                  ("apps", "v1", "deployments"),
                                  ("networking.k8s.io", "v1", "ingresses"),
                                  ("networking.k8s.io", "v1", "networkpolicies")):
    kopf.on.event(_group, _version, _plural, labels=CHILD_LABELS)(_child_event)
