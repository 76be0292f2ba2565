"""The promise to Joyn FSM on the real node: receivers in pods of their own keep a mirror of a
tenant's users and groups from its event stream alone, while Entra's requests churn through the
Ingress. One tenant is polled through its Service by a receiver in a namespace its
NetworkPolicy admits (spec.events.receivers), and a pod of another namespace is refused; the
other tenant pushes to a receiver pod's Service. Both mirrors equal the server's state, and
status.events shows the backlog going to 0.

The receivers are examples/events_mirror.py and the client (client/joyn_scim_events) as they
are in the repository, mounted from a ConfigMap into the app image, whose Python already has
the client's two dependencies (the server uses them too)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from events.churn import Churn, normalized, server_state

from .conftest import ClientPod, eventually, module_namespace, module_operator
from .test_tenant_e2e import create_tenant, secret, tenant, wait_ready

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[2]
RECEIVERS = {"joyn-events-receiver": "yes"}  # the label spec.events.receivers admits
PUSH_PORT = 9000


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "evrecv")


@pytest.fixture(scope="module")
def operator(cluster, ns, tmp_path_factory, request):
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN=cluster.domain,
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="traefik",
                               RESYNC_SECONDS="10", ACTIVITY_SECONDS="2")


@pytest.fixture(scope="module")
def apps(kube):
    """The application's namespace (admitted) and a stranger's (not)."""
    names = {}
    for key, labels in (("app", RECEIVERS), ("stranger", {})):
        names[key] = kube.namespace(f"evrecv-{key}")
        r = kube.request("PATCH", f"/api/v1/namespaces/{names[key]}", json={
            "metadata": {"labels": labels}},
            headers={"Content-Type": "application/merge-patch+json"})
        assert r.status_code == 200, r.text
    code = {f"joyn_scim_events.{p.name}": p.read_text()
            for p in (ROOT / "client" / "joyn_scim_events").glob("*.py")}
    code["events_mirror.py"] = (ROOT / "examples" / "events_mirror.py").read_text()
    r = kube.create(f"/api/v1/namespaces/{names['app']}/configmaps", {
        "metadata": {"name": "receiver"}, "data": code})
    assert r.status_code == 201, r.text
    yield names
    for name in names.values():
        kube.delete(f"/api/v1/namespaces/{name}")


def receiver_pod(kube, cluster, ns: str, name: str, args: list[str], labels: dict) -> None:
    """examples/events_mirror.py in a pod, the receiver token from a Secret of the app's."""
    items = [{"key": k, "path": k.replace("joyn_scim_events.", "joyn_scim_events/")}
             for k in kube.get(f"/api/v1/namespaces/{ns}/configmaps/receiver").json()["data"]]
    r = kube.create(f"/api/v1/namespaces/{ns}/pods", {
        "metadata": {"name": name, "labels": labels}, "spec": {
            "automountServiceAccountToken": False, "containers": [{
                "name": "receiver", "image": cluster.images.app, "imagePullPolicy": "Never",
                "command": ["python", "/receiver/events_mirror.py", *args,
                            "--token-file", "/token/token", "--db", "/tmp/mirror.db"],
                "env": [{"name": "PYTHONPATH", "value": "/receiver"}],
                "volumeMounts": [{"name": "code", "mountPath": "/receiver"},
                                 {"name": "token", "mountPath": "/token", "readOnly": True}]}],
            "volumes": [{"name": "code", "configMap": {"name": "receiver", "items": items}},
                        {"name": "token", "secret": {"secretName": name}}]}})
    assert r.status_code == 201, r.text


def copy_receiver_token(kube, tenant_ns: str, tenant_name: str, app_ns: str, name: str) -> None:
    """What the application team does with `kubectl joyn credentials --events`."""
    s = kube.get(f"/api/v1/namespaces/{tenant_ns}/secrets/{tenant_name}-scim-events-token")
    r = kube.create(f"/api/v1/namespaces/{app_ns}/secrets", {
        "metadata": {"name": name}, "data": {"token": s.json()["data"]["token"]}})
    assert r.status_code == 201, r.text


def service_ip(kube, ns: str, name: str) -> str:
    return kube.get(f"/api/v1/namespaces/{ns}/services/{name}").json()["spec"]["clusterIP"]


def mirror(cluster, ns: str, pod: str) -> dict | None:
    """The receiver's mirror, read in its pod; None while its container is not running yet
    (the exec then fails with "container not found")."""
    try:
        out = cluster.cp.kubectl("-n", ns, "exec", pod, "--", "python", "-c",
                                 "import json, events_mirror as m; "
                                 "print(json.dumps(m.SqliteMirror('/tmp/mirror.db').dump()))")
    except RuntimeError as e:
        if "container not found" in str(e) or "not running" in str(e):
            return None
        raise
    return normalized(json.loads(out))


class _EntraSNI(httpx.HTTPTransport):
    """Every request with the Tenant URL's host for TLS, sent to the ingress controller's
    address (curl --resolve): what tests/kube/test_tenant_e2e.py's Entra does per request."""

    def __init__(self, host: str, ca_file: str) -> None:
        super().__init__(verify=ssl.create_default_context(cafile=ca_file))
        self.host = host

    def handle_request(self, request):
        request.extensions["sni_hostname"] = self.host
        request.headers["Host"] = self.host
        return super().handle_request(request)


def entra(cluster, url: str, token: str) -> httpx.Client:
    """A SCIM client of the Tenant URL through the Ingress, as tests/events/churn.py takes."""
    parts = urlsplit(url)
    return httpx.Client(base_url=f"https://{cluster.ingress.address}{parts.path}", timeout=30,
                        transport=_EntraSNI(parts.hostname, str(cluster.ingress.ca_file)),
                        headers={"Authorization": f"Bearer {token}"})


def events_status(kube, ns: str, name: str) -> dict:
    return (tenant(kube, ns, name).get("status") or {}).get("events") or {}


def test_receivers_in_pods_keep_exact_mirrors_by_poll_and_by_push(
        kube, cluster, ns, operator, apps, network_policies_enforced):
    admitted = [{"namespaceSelector": {"matchLabels": RECEIVERS}}]
    # The push receiver's Service first: the tenant's spec names its address.
    r = kube.create(f"/api/v1/namespaces/{apps['app']}/services", {
        "metadata": {"name": "push-mirror"}, "spec": {
            "selector": {"app": "push-mirror"}, "ports": [{"port": PUSH_PORT}]}})
    assert r.status_code == 201, r.text
    push_url = f"http://{r.json()['spec']['clusterIP']}:{PUSH_PORT}/"
    polled = create_tenant(kube, cluster, ns, events={"enabled": True, "receivers": admitted})
    pushed = create_tenant(kube, cluster, ns, events={
        "enabled": True, "receivers": admitted, "push": {"url": push_url}})
    for name in (polled, pushed):
        wait_ready(kube, ns, name)

    clients = {}
    for name, mode, extra in ((polled, "poll", []),
                              (pushed, "push", ["--listen", f"0.0.0.0:{PUSH_PORT}"])):
        obj = tenant(kube, ns, name)
        server = f"http://{service_ip(kube, ns, f'{name}-scim')}:8080"
        copy_receiver_token(kube, ns, name, apps["app"], f"{mode}-mirror")
        receiver_pod(kube, cluster, apps["app"], f"{mode}-mirror",
                     [mode, "--server", server, "--issuer", obj["status"]["url"], *extra],
                     {"app": f"{mode}-mirror"})
        clients[name] = entra(cluster, obj["status"]["url"], secret(kube, ns, name)["token"])
        eventually(lambda c=clients[name]: c.get("/Users").status_code == 200, timeout=60,
                   what="the Ingress routes the tenant")

    # Both receivers have started from their tenant's (empty) snapshot before Entra comes.
    for mode in ("poll", "push"):
        eventually(lambda m=mode: all(c.get("ready") for c in kube.get(
            f"/api/v1/namespaces/{apps['app']}/pods/{m}-mirror").json().get("status", {}).get(
            "containerStatuses") or [{}]), timeout=120, what=f"the {mode} receiver running")
    for name, mode in ((polled, "poll"), (pushed, "push")):
        eventually(lambda n=name, m=mode: mirror(cluster, apps["app"], f"{m}-mirror") ==
                   server_state(clients[n]), timeout=120, what=f"the {mode} receiver started")

    # A pod of a namespace the policy does not admit cannot even connect.
    stranger = ClientPod(kube, cluster.images.base, apps["stranger"], "stranger", [
        (f"http://{service_ip(kube, ns, f'{polled}-scim')}:8080/healthz", 3)])
    [refused] = stranger.results()
    assert "status" not in refused and "timed out" in refused["error"], refused

    # Entra's churn through the Ingress, on both tenants.
    for seed, client in enumerate(clients.values()):
        Churn(client, seed=seed).run(150)

    for name, mode in ((polled, "poll"), (pushed, "push")):
        eventually(lambda n=name, m=mode: mirror(cluster, apps["app"], f"{m}-mirror") ==
                   server_state(clients[n]), timeout=240, what=f"the {mode} mirror equal")
        status = eventually(lambda n=name: (e := events_status(kube, ns, n)).get(
            "lastDeliveryAt") and e.get("backlog") == 0 and e, timeout=120,
            what=f"{name}'s backlog 0 after deliveries")
        assert status["delivery"] == mode and status["resyncRequired"] is False
        # Everything since the start came through the stream: one snapshot, at the start.
        log = kube.get(f"/api/v1/namespaces/{apps['app']}/pods/{mode}-mirror/log").text
        assert log.count("store replaced from a snapshot") == 1, log[-2000:]
