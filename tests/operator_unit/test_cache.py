"""The watches' store (joyn_operator.cache): newer objects win, deletions drop, pods by tenant,
and a CachedKube that reads from it and falls back to the API server."""

import asyncio

from joyn_operator.cache import CachedKube, ObjectCache, object_path


def obj(kind, name, rv, ns="customers", **meta):
    return {"kind": kind, "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv),
                                       **meta}}


def test_a_newer_object_replaces_an_older_one_never_the_reverse():
    cache = ObjectCache()
    url = object_path(obj("Service", "acme-scim", 1))
    cache.seen("ADDED", obj("Service", "acme-scim", 5))
    cache.seen("MODIFIED", obj("Service", "acme-scim", 3))  # late, older
    assert cache.get(url)["metadata"]["resourceVersion"] == "5"
    cache.seen("MODIFIED", obj("Service", "acme-scim", 7))
    assert cache.get(url)["metadata"]["resourceVersion"] == "7"
    cache.seen("DELETED", obj("Service", "acme-scim", 8))
    assert cache.get(url) is None


def test_a_deployment_changes_when_its_spec_metadata_or_availability_does():
    def deployment(rv, generation=1, replicas=1, available=0, observed=1, labels=None):
        d = obj("Deployment", "acme-scim", rv, generation=generation, labels=labels or {})
        return {**d, "spec": {"replicas": replicas},
                "status": {"observedGeneration": observed, "replicas": 1,
                           "availableReplicas": available,
                           "conditions": [{"type": "Progressing", "lastUpdateTime": str(rv)}]}}

    cache = ObjectCache()
    assert cache.seen("ADDED", deployment(1))
    assert not cache.seen("MODIFIED", deployment(2))  # the controller's progress only
    assert cache.seen("MODIFIED", deployment(3, available=1))  # now available
    assert cache.seen("MODIFIED", deployment(4, generation=2, replicas=3, available=1))  # edited
    assert cache.seen("MODIFIED", deployment(5, generation=2, replicas=3, available=1,
                                             observed=2))  # the new spec is rolled out
    assert cache.seen("MODIFIED", deployment(6, generation=2, replicas=3, available=1,
                                             observed=2, labels={"x": "y"}))  # relabelled


def test_pods_are_kept_by_tenant_and_cluster_objects_by_name():
    cache = ObjectCache()
    labels = {"app.kubernetes.io/instance": "acme"}
    cache.seen(None, obj("Pod", "acme-scim-1", 1, labels=labels))
    cache.seen(None, obj("Pod", "acme-scim-2", 1, labels=labels))
    assert {p["metadata"]["name"] for p in cache.pods("customers", "acme")} == {
        "acme-scim-1", "acme-scim-2"}
    cache.seen("DELETED", obj("Pod", "acme-scim-1", 2, labels=labels))
    assert [p["metadata"]["name"] for p in cache.pods("customers", "acme")] == ["acme-scim-2"]
    assert cache.pods("customers", "other") == []
    cls = {"kind": "IngressClass", "metadata": {"name": "nginx", "resourceVersion": "1"}}
    cache.seen(None, cls)
    assert cache.get("/apis/networking.k8s.io/v1/ingressclasses/nginx") == cls
    cache.seen(None, {"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}})
    assert len(cache) == 2  # a pod and the class: a kind the operator never reads is not kept


class Recording:
    """Stands in for Kube to count what reaches the API server (the cluster tests use the
    real one)."""

    def __init__(self):
        self.calls = []

    async def get(self, url):
        self.calls.append(("get", url))
        return {"metadata": {"name": "acme-scim", "namespace": "customers",
                             "resourceVersion": "1"}}

    async def list(self, url, selector=None):
        self.calls.append(("list", url))
        return []

    async def apply(self, o):
        self.calls.append(("apply", o["metadata"]["name"]))
        return {**o, "metadata": {**o["metadata"], "resourceVersion": "9"}}, True


def test_reads_come_from_the_cache_once_it_has_them():
    api, cache = Recording(), ObjectCache()
    kube = CachedKube(api, cache)
    url = "/api/v1/namespaces/customers/services/acme-scim"
    first = asyncio.run(kube.get(url))
    again = asyncio.run(kube.get(url))
    assert first == again and api.calls == [("get", url)]  # stored under its URL
    asyncio.run(kube.apply(obj("Service", "acme-scim", 0)))
    assert asyncio.run(kube.get(url))["metadata"]["resourceVersion"] == "9"
    pods = "/api/v1/namespaces/customers/pods"
    selector = "app.kubernetes.io/name=joyn-scim,app.kubernetes.io/instance=acme"
    asyncio.run(kube.list(pods, selector))  # none cached yet: asks
    cache.seen(None, obj("Pod", "p", 1, labels={"app.kubernetes.io/instance": "acme"}))
    assert [p["metadata"]["name"] for p in asyncio.run(kube.list(pods, selector))] == ["p"]
    assert [c[0] for c in api.calls] == ["get", "apply", "list"]


def test_what_no_watch_shows_is_read_afresh_every_time():
    """A copy of a Job or of CloudNativePG's objects would never change again: a DatabaseRole
    CloudNativePG applies later, a Cluster made after the tenant, a move's Job finishing."""
    api, cache = Recording(), ObjectCache()
    kube = CachedKube(api, cache)
    urls = ["/apis/postgresql.cnpg.io/v1/namespaces/db/databaseroles/r",
            "/apis/postgresql.cnpg.io/v1/namespaces/db/clusters/pg",
            "/apis/batch/v1/namespaces/customers/jobs/acme-scim-move"]
    for url in urls:
        asyncio.run(kube.get(url))
        asyncio.run(kube.get(url))
    assert api.calls == [("get", url) for url in urls for _ in range(2)]
