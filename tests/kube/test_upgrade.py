"""A new server image on the real node: the operator restarted with another server image, and a
`helm upgrade` to a new image, move every tenant's server by the rollout policy; this checks
what happened to each: rolled one batch at a time, held until it asks, or left on its own image.

The new image is the one built here under a second name in the node's containerd: a new
reference is all the pod template sees, so the kubelet recreates the pod exactly as for a new
release (no second build needed; its content is not what is tested)."""

from __future__ import annotations

import secrets
import time

import pytest

from .conftest import CHART, Helm, chart_values, eventually, module_namespace, module_operator

TENANTS = "/apis/scim.sevenlakes.com/v1alpha1/namespaces/{ns}/joynscimtenants"
PODS = "/api/v1/namespaces/{ns}/pods"
UPDATE = "scim.sevenlakes.com/update-server-image"


@pytest.fixture(scope="module")
def images(cluster):
    """The image built here and two more names of it, as two later releases."""
    base = cluster.images.app
    repository = base.rpartition(":")[0]
    later = [f"{repository}:upgrade-{secrets.token_hex(3)}" for _ in range(2)]
    for ref in later:
        cluster.node.ctr("images", "tag", base, ref)
    yield [base, *later]
    for ref in later:
        cluster.node.ctr("images", "rm", ref, check=False)


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "upgrade")


def operator(cluster, ns, tmp_path_factory, request, image: str, policy: str, batch: int = 1):
    """The operator (a process) with `image` as the server image, stopped afterwards."""
    gen = module_operator(cluster, ns, tmp_path_factory, request, SERVER_IMAGE=image,
                          SERVER_IMAGE_ROLLOUT=policy, SERVER_IMAGE_BATCH_SIZE=str(batch),
                          # No resync during the test: the next batch starts because the last
                          # one became available, not because a periodic pass came by.
                          RESYNC_SECONDS="600", ACTIVITY_SECONDS="0")
    next(gen)
    return gen


def stop(gen) -> None:
    next(gen, None)


def create(kube, ns: str, **server) -> str:
    name = f"u{secrets.token_hex(3)}"
    r = kube.create(TENANTS.format(ns=ns), {
        "apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
        "metadata": {"name": name},
        # No Ingress: what is tested is the server's pod; Ready then needs it and its token.
        "spec": {"displayName": "Acme", "ingress": {"enabled": False},
                 "networkPolicy": {"enabled": False}, "server": server}})
    assert r.status_code == 201, r.text
    return name


def tenant(kube, ns, name) -> dict:
    return kube.get(f"{TENANTS.format(ns=ns)}/{name}").json()


def ready(kube, ns, name) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (tenant(kube, ns, name).get("status") or {}).get("conditions") or [])


def servers(kube, ns) -> dict[str, list[dict]]:
    """Each tenant's server pods."""
    out: dict[str, list[dict]] = {}
    for pod in kube.get(PODS.format(ns=ns), params={
            "labelSelector": "app.kubernetes.io/component=scim-server"}).json()["items"]:
        out.setdefault(pod["metadata"]["labels"]["app.kubernetes.io/instance"], []).append(pod)
    return out


def serving(pods: list[dict], image: str) -> bool:
    """One pod, on `image`, Ready: the server rolled (or never moved) and serves again."""
    return len(pods) == 1 and pods[0]["spec"]["containers"][0]["image"] == image and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pods[0]["status"].get("conditions") or [])


def all_ready(kube, ns, names) -> None:
    eventually(lambda: all(ready(kube, ns, n) for n in names), timeout=240,
               what=f"tenants {names} Ready")


def test_a_new_server_image_rolls_one_batch_at_a_time_and_a_pinned_tenant_stays(
        kube, cluster, ns, images, tmp_path_factory, request):
    old, new, _ = images
    first = operator(cluster, ns, tmp_path_factory, request, old, "Batches")
    followers = [create(kube, ns) for _ in range(3)]
    pinned = create(kube, ns, image=old)
    all_ready(kube, ns, [*followers, pinned])
    before = {n: p[0]["metadata"]["uid"] for n, p in servers(kube, ns).items()}
    stop(first)

    upgraded = operator(cluster, ns, tmp_path_factory, request, new, "Batches", batch=1)
    try:
        # Watch every server until all followers serve the new image: at no moment may more
        # than one (the batch) be away, i.e. not serving at all.
        most_away = 0
        pending_seen: set[str] = set()
        deadline = time.monotonic() + 300
        while True:
            pods = servers(kube, ns)
            away = [n for n in followers if not serving(pods.get(n, []), new)
                    and not serving(pods.get(n, []), old)]
            most_away = max(most_away, len(away))
            pending_seen |= {n for n in followers if (tenant(kube, ns, n).get("status") or {})
                             .get("server", {}).get("pendingImage") == new}
            if all(serving(pods.get(n, []), new) for n in followers):
                break
            assert time.monotonic() < deadline, f"not all rolled to {new}: {pods.keys()}"
            time.sleep(0.2)
        assert most_away == 1, "servers rolled more than one at a time"
        assert pending_seen, "no tenant waited for its batch"
        for n in followers:
            assert servers(kube, ns)[n][0]["metadata"]["uid"] != before[n]
            status = eventually(lambda n=n: (s := tenant(kube, ns, n)["status"]).get(
                "server") == {"image": new} and s, what=f"{n}'s status to show {new}")
            assert "pendingImage" not in status["server"]
        # The tenant that names its image was not restarted.
        [same] = servers(kube, ns)[pinned]
        assert same["metadata"]["uid"] == before[pinned]
        assert tenant(kube, ns, pinned)["status"]["server"] == {"image": old}
    finally:
        stop(upgraded)


def test_opt_in_holds_every_server_until_its_tenant_asks(kube, cluster, ns, images,
                                                         tmp_path_factory, request):
    _, current, newest = images
    first = operator(cluster, ns, tmp_path_factory, request, current, "OptIn")
    names = [create(kube, ns) for _ in range(2)]
    all_ready(kube, ns, names)
    before = {n: servers(kube, ns)[n][0]["metadata"]["uid"] for n in names}
    stop(first)

    upgraded = operator(cluster, ns, tmp_path_factory, request, newest, "OptIn")
    try:
        held, asking = names
        for n in names:
            eventually(lambda n=n: tenant(kube, ns, n).get("status", {}).get("server") ==
                       {"image": current, "pendingImage": newest}, timeout=60,
                       what=f"{n} held with {newest} pending")
        r = kube.http.patch(f"{TENANTS.format(ns=ns)}/{asking}",
                            json={"metadata": {"annotations": {UPDATE: "true"}}},
                            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
        eventually(lambda: serving(servers(kube, ns).get(asking, []), newest), timeout=180,
                   what=f"{asking} to serve {newest}")
        eventually(lambda: tenant(kube, ns, asking)["status"]["server"] == {"image": newest},
                   what=f"{asking}'s status")
        # The other one still runs its first pod, untouched, and still says what is pending.
        [pod] = servers(kube, ns)[held]
        assert pod["metadata"]["uid"] == before[held]
        assert pod["spec"]["containers"][0]["image"] == current
        assert tenant(kube, ns, held)["status"]["server"] == {"image": current,
                                                             "pendingImage": newest}
    finally:
        stop(upgraded)


def test_a_chart_upgrade_to_a_new_image_moves_the_operator_and_then_the_servers_in_batches(
        kube, cluster, images, tools_bins, tmp_path_factory, request):
    """What a platform team does: `helm upgrade` with the next release's image. The operator's
    pod is replaced, and the servers follow it one batch at a time (batchSize 1 here)."""
    old, new, _ = images
    tenants_ns = kube.namespace("chart-upgrade")
    home = kube.namespace("chart-upgrade-operator")
    helm = Helm(tools_bins, tmp_path_factory.mktemp("helm"), cluster.cp.kubeconfig)
    values = chart_values(cluster, tenants_ns, crds={"enabled": False})
    values["operator"]["serverImageRollout"] = {"policy": "Batches", "batchSize": 1}
    try:
        helm.run("install", "up", str(CHART), "-n", home, "--wait", "--timeout", "4m",
                 *helm.values(values), timeout=300)
        names = [create(kube, tenants_ns) for _ in range(2)]
        all_ready(kube, tenants_ns, names)
        before = {n: p[0]["metadata"]["uid"] for n, p in servers(kube, tenants_ns).items()}

        values["image"]["tag"] = new.rpartition(":")[2]
        helm.run("upgrade", "up", str(CHART), "-n", home, "--wait", "--timeout", "4m",
                 *helm.values(values), timeout=300)
        operator_pod = kube.get(f"/api/v1/namespaces/{home}/pods").json()["items"]
        assert [p["spec"]["containers"][0]["image"] for p in operator_pod
                if not p["metadata"].get("deletionTimestamp")] == [new]
        most_away = 0
        deadline = time.monotonic() + 300
        while not all(serving(servers(kube, tenants_ns).get(n, []), new) for n in names):
            pods = servers(kube, tenants_ns)
            most_away = max(most_away, sum(
                1 for n in names if not serving(pods.get(n, []), new)
                and not serving(pods.get(n, []), old)))
            assert time.monotonic() < deadline, f"not all rolled to {new}"
            time.sleep(0.2)
        assert most_away <= 1, "servers rolled more than one at a time"
        for n in names:
            assert servers(kube, tenants_ns)[n][0]["metadata"]["uid"] != before[n]
            eventually(lambda n=n: tenant(kube, tenants_ns, n)["status"].get("server") ==
                       {"image": new}, what=f"{n}'s status to show {new}")
    finally:
        if request.session.testsfailed:
            print(cluster.cp.kubectl("logs", "-n", home, "deploy/up-joyn-scim", "--tail=100"))
        helm.run("uninstall", "up", "-n", home, "--wait", check=False)
        for ns in (tenants_ns, home):
            kube.delete(f"/api/v1/namespaces/{ns}")
