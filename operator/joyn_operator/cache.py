"""What kopf's watches have shown of the objects a reconcile reads: an informer's store.

kopf already watches tenants, their children (by label), Secrets and IngressClasses; its event
handlers put each object here, so a reconcile reads them from memory and, when nothing
differs, makes no GET, LIST or apply at all (500 tenants otherwise cost thousands of requests
a minute). What is not here yet (the first moments after a start) is read from the API server,
and an object the operator writes is stored from the API server's answer at once.

Hand-written rather than kubernetes_asyncio's watch-based informers: kopf holds the watches
already, and a second set would double the API server's watch load.
"""

from __future__ import annotations

from collections import defaultdict

from . import KIND
from .keys import INSTANCE_LABEL
from .kube import KINDS, Kube, path
from .status import available

CLUSTER_PATHS = {"IngressClass": "/apis/networking.k8s.io/v1/ingressclasses"}
# What no watch of the operator shows, so a copy here would never change again: a move's Job
# and CloudNativePG's objects (a Cluster made later, a DatabaseRole CloudNativePG has applied).
# Read afresh each time; only PostgreSQL tenants read them, a few per reconcile.
UNWATCHED = ("/apis/batch/", "/apis/postgresql.cnpg.io/")


def object_path(obj: dict) -> str | None:
    """The API path of an object from a watch, or None for a kind nobody reads."""
    kind, meta = obj.get("kind"), obj.get("metadata") or {}
    if kind in CLUSTER_PATHS:
        return f"{CLUSTER_PATHS[kind]}/{meta.get('name')}"
    if kind in KINDS and meta.get("namespace"):
        return path(kind, meta["namespace"], meta.get("name"))
    return None


def _newer(new: dict, old: dict) -> bool:
    """Whether `new` is not older than `old`. resourceVersions are etcd revisions, so they
    compare as numbers on every API server backed by etcd; if one is not a number, trust the
    latest arrival."""
    try:
        return int(new["metadata"]["resourceVersion"]) >= int(old["metadata"]["resourceVersion"])
    except (KeyError, ValueError, TypeError):
        return True


ABSENT: dict = {}  # the cache's answer "the watch shows no such object"
# Kinds whose every event reaches the cache (all IngressClasses are watched), so an absence
# it remembers is the truth until the watch says otherwise.
WHOLLY_WATCHED = tuple(CLUSTER_PATHS.values())


def _pod_signature(pod: dict) -> tuple:
    """What the tenant's conditions read of a pod: a change elsewhere (the scheduler retrying
    an unschedulable pod, a probe's timestamp) needs no reconcile."""
    status = pod.get("status") or {}
    return (status.get("phase"),
            tuple((c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
                  for c in status.get("conditions") or []),
            tuple((c.get("ready"), ((c.get("state") or {}).get("waiting") or {}).get("reason"))
                  for c in status.get("containerStatuses") or []))


def _deployment_signature(deployment: dict) -> tuple:
    """What a reconcile reads of a Deployment: its metadata and spec (drift, ownership) and,
    of its status, only whether it is available. The controllers' progress updates while a
    pod starts (replicas, conditions' timestamps) need no reconcile."""
    meta = {k: v for k, v in (deployment.get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields")}
    return meta, deployment.get("spec"), available(deployment)


class ObjectCache:
    def __init__(self) -> None:
        self._objects: dict[str, dict] = {}
        self._pods: defaultdict[tuple[str, str], dict[str, dict]] = defaultdict(dict)

    def __len__(self) -> int:
        return sum(1 for o in self._objects.values() if o) + \
            sum(len(p) for p in self._pods.values())

    def seen(self, event_type: str | None, obj: dict) -> bool:
        """A watch event (ADDED, MODIFIED, DELETED, or None for kopf's initial listing).
        Returns whether it changes anything a reconcile reads."""
        meta = obj.get("metadata") or {}
        if obj.get("kind") == "Pod":
            key = (meta.get("namespace"), (meta.get("labels") or {}).get(INSTANCE_LABEL))
            pods = self._pods[key]
            before = pods.get(meta.get("name"))
            if event_type == "DELETED":
                pods.pop(meta.get("name"), None)
                if not pods:
                    del self._pods[key]
                return True
            if before is None or _newer(obj, before):
                pods[meta["name"]] = obj
                return before is None or _pod_signature(before) != _pod_signature(obj)
            return False
        url = object_path(obj)
        if url is None:
            return False
        if event_type == "DELETED":
            if url.startswith(WHOLLY_WATCHED):
                self._objects[url] = ABSENT
            else:
                self._objects.pop(url, None)
            return True
        before = self._objects.get(url)
        # The same version again (the echo of our own apply, a re-list's copy) counts as a
        # change: skipping it made 500 tenants' cold start 8 s slower in the bench (42.8 ->
        # 51.0 s, twice), for a reason not yet found, while it saved ~0.2 CPU s a minute.
        changed = not before or _newer(obj, before)
        if changed and before and obj.get("kind") == "Deployment" and event_type != "ADDED":
            changed = _deployment_signature(before) != _deployment_signature(obj)
        self.put(url, obj)
        return changed

    def get(self, url: str) -> dict | None:
        """The object, ABSENT when the watch shows it is not there, None when unknown."""
        return self._objects.get(url)

    def put(self, url: str, obj: dict) -> None:
        """An object read from the API server at `url`, unless the watch has shown a newer."""
        before = self._objects.get(url)
        if not before or _newer(obj, before):
            self._objects[url] = obj

    def absent(self, url: str) -> None:
        """The API server said 404: remembered where the watch would tell of a change."""
        if url.startswith(WHOLLY_WATCHED):
            self._objects[url] = ABSENT

    def tenants(self) -> list[dict]:
        """Every tenant the watch has shown and not seen deleted."""
        return [o for o in self._objects.values() if o and o.get("kind") == KIND]

    def pods(self, namespace: str, tenant: str) -> list[dict]:
        return list(self._pods.get((namespace, tenant), {}).values())

    def forget(self, url: str) -> None:
        self._objects.pop(url, None)


class CachedKube:
    """A Kube whose reads come from the cache when it has the object; writes go to the API
    server and their answers into the cache."""

    def __init__(self, kube: Kube, cache: ObjectCache) -> None:
        self.kube, self.cache = kube, cache

    async def get(self, url: str) -> dict | None:
        if url.startswith(UNWATCHED):
            return await self.kube.get(url)
        cached = self.cache.get(url)
        if cached is ABSENT:
            return None
        if cached is not None:
            return cached
        got = await self.kube.get(url)
        if got is None:
            self.cache.absent(url)
        else:
            self.cache.put(url, got)
        return got

    async def list(self, url: str, label_selector: str | None = None) -> list[dict]:
        selector = dict(part.split("=", 1) for part in (label_selector or "").split(",") if part)
        tenant, namespace = selector.get(INSTANCE_LABEL), url.split("/namespaces/")[-1].split(
            "/")[0]
        if url.endswith("/pods") and tenant and (pods := self.cache.pods(namespace, tenant)):
            return pods
        return await self.kube.list(url, label_selector)

    async def apply(self, obj: dict) -> tuple[dict, bool]:
        after, created = await self.kube.apply(obj)
        self.cache.seen(None, after)
        return after, created

    async def delete(self, url: str) -> None:
        await self.kube.delete(url)
        self.cache.forget(url)

    async def annotate(self, kind: str, namespace: str, name: str,
                       annotations: dict[str, str]) -> dict:
        after = await self.kube.annotate(kind, namespace, name, annotations)
        self.cache.seen(None, after)
        return after

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict) -> dict:
        after = await self.kube.patch_status(kind, namespace, name, status)
        self.cache.seen(None, after)
        return after

    async def post_event(self, *args, **kwargs) -> None:
        await self.kube.post_event(*args, **kwargs)

    async def close(self) -> None:
        await self.kube.close()

