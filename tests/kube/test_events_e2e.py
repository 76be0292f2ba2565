"""The event stream of a tenant (spec.events) on the real node, with the operator run as a
process: both Secrets made once, the server pod's settings and read-only mounts, the JWKS the
pod serves, a reconcile that keeps both Secrets, a signing-key rotation with both keys
published during its overlap, and status.events following the backlog of a user created
through the Ingress until the test acknowledges it.

The test reaches the server pod at its own address: the harness's host routes the node's pod
network (no kube-proxy, so a Service's ClusterIP is not reachable from here, and the CNI
bridge plugin enforces no NetworkPolicy). No test prints a token or key: values are compared,
never shown."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from .conftest import eventually, module_namespace, module_operator
from .test_tenant_e2e import TENANTS, USER, Entra, create_tenant, pods, tenant, wait_ready

# The signing-key overlap ends during the test, so its end is seen too.
pytestmark = pytest.mark.timeout(420)
KEY_OVERLAP = 40  # seconds


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "events")


@pytest.fixture(scope="module")
def operator(cluster, ns, tmp_path_factory, request):
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN=cluster.domain,
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="traefik",
                               RESYNC_SECONDS="10", ACTIVITY_SECONDS="2")


def secret(kube, ns: str, name: str) -> dict | None:
    r = kube.get(f"/api/v1/namespaces/{ns}/secrets/{name}")
    return r.json() if r.status_code == 200 else None


def data(s: dict) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in s["data"].items()}


def kid(pem: str) -> str:
    """The key id the server gives a key: its RFC 7638 thumbprint."""
    return ECKey.import_key(pem).thumbprint()


def events_status(kube, ns, name) -> dict:
    return (tenant(kube, ns, name).get("status") or {}).get("events") or {}


class Server:
    """The tenant's ready server pod, at its own address, with the receiver's token."""

    def __init__(self, kube, ns: str, name: str) -> None:
        def ready_pod():
            for p in pods(kube, ns, name):
                if not p["metadata"].get("deletionTimestamp") and all(
                        c["ready"] for c in p["status"].get("containerStatuses") or
                        [{"ready": False}]):
                    return p
            return None
        self.pod = eventually(ready_pod, timeout=180, what=f"a ready server pod of {name}")
        self.http = httpx.Client(base_url=f"http://{self.pod['status']['podIP']}:8080",
                                 timeout=10)

    def jwks_kids(self) -> list[str]:
        return [k["kid"] for k in self.http.get("/events/jwks.json").json()["keys"]]


def test_a_tenant_with_events_gets_its_stream_and_keeps_its_credentials(kube, cluster, ns,
                                                                       operator):
    name = create_tenant(kube, cluster, ns, events={
        "enabled": True, "previousSigningKeyValidFor": f"{KEY_OVERLAP}s"})
    wait_ready(kube, ns, name)
    obj = tenant(kube, ns, name)

    # -- two Secrets of their own, made once -------------------------------------------------
    token_secret = eventually(lambda: secret(kube, ns, f"{name}-scim-events-token"),
                              what="the receiver token's Secret")
    key_secret = eventually(lambda: secret(kube, ns, f"{name}-scim-events-signing-key"),
                            what="the signing key's Secret")
    receiver = data(token_secret)
    keys = data(key_secret)
    assert set(receiver) == {"token"} and len(receiver["token"]) == 43
    assert set(keys) == {"signing-key.pem"}
    private = serialization.load_pem_private_key(keys["signing-key.pem"].encode(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey) and private.curve.name == "secp256r1"
    entra_token = data(secret(kube, ns, f"{name}-scim-token"))["token"]
    assert receiver["token"] != entra_token and receiver["token"] not in str(keys)
    for s in (token_secret, key_secret):  # deletionPolicy Retain (default): not owned
        assert "ownerReferences" not in s["metadata"]
        assert s["metadata"]["labels"]["app.kubernetes.io/instance"] == name

    # -- the pod: the settings and read-only mounts, nothing of the key in its spec ------------
    server = Server(kube, ns, name)
    container = server.pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JOYN_SCIM_EVENTS_TOKEN_FILES"].split(",") == [
        "/var/run/joyn-scim/events-token/token",
        "/var/run/joyn-scim/events-token/previous-token"]
    assert env["JOYN_SCIM_EVENTS_SIGNING_KEY_FILES"].split(",") == [
        "/var/run/joyn-scim/events-signing-key/signing-key.pem",
        "/var/run/joyn-scim/events-signing-key/previous-signing-keys.pem"]
    assert (env["JOYN_SCIM_EVENTS_AUDIENCE"], env["JOYN_SCIM_EVENTS_RETENTION"],
            env["JOYN_SCIM_EVENTS_RETENTION_COUNT"]) == ("joyn-fsm", "336h", "1000000")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["events-token"]["readOnly"] and mounts["events-signing-key"]["readOnly"]
    volumes = {v["name"]: v["secret"]["secretName"] for v in server.pod["spec"]["volumes"]
               if "secret" in v}
    assert volumes["events-token"] == f"{name}-scim-events-token"
    assert volumes["events-signing-key"] == f"{name}-scim-events-signing-key"
    assert keys["signing-key.pem"] not in str(server.pod)

    # -- the JWKS the pod serves is the Secret's key; the two credentials stay apart ------------
    first_kid = kid(keys["signing-key.pem"])
    assert eventually(server.jwks_kids, what="the JWKS") == [first_kid]
    poll = {"returnImmediately": True, "maxEvents": 0}
    assert server.http.post("/events", json=poll, headers={
        "Authorization": f"Bearer {entra_token}"}).status_code == 401
    assert server.http.post("/events", json=poll, headers={
        "Authorization": f"Bearer {receiver['token']}"}).status_code == 200

    status = eventually(lambda: (e := events_status(kube, ns, name)).get("signingKey") and e,
                        what="status.events")
    assert status["enabled"] is True and status["delivery"] == "poll"
    assert status["receiverSecretRef"] == {"name": f"{name}-scim-events-token", "key": "token"}
    assert receiver["token"] not in str(obj["status"]) and "PRIVATE" not in str(status)

    # -- a user created through the Ingress is an event the status shows waiting ---------------
    entra = Entra(cluster, obj["status"]["url"])
    created = eventually(lambda: (r := entra.request("POST", "/Users", entra_token, json={
        "schemas": [USER], "userName": "grace@acme.example", "active": True}))
        .status_code not in (404, 503) and r, timeout=30, what="the ingress controller's route")
    assert created.status_code == 201, created.text
    waiting = eventually(lambda: (e := events_status(kube, ns, name)).get("backlog") == 1 and e,
                         what="status.events.backlog 1")
    assert waiting["oldestUnackedAt"] and waiting["resyncRequired"] is False

    # The receiver acknowledges: the stream's jtis read with tail (which consumes nothing),
    # acknowledged with one poll.
    tail = server.http.get("/events/tail", headers={
        "Authorization": f"Bearer {receiver['token']}"})
    jtis = [json.loads(line)["jti"] for line in tail.text.splitlines() if line.strip()]
    assert len(jtis) == 1
    acked = server.http.post("/events", json={"ack": jtis, **poll}, headers={
        "Authorization": f"Bearer {receiver['token']}"})
    assert acked.status_code == 200, acked.text
    drained = eventually(lambda: (e := events_status(kube, ns, name)).get("backlog") == 0 and e,
                         what="status.events.backlog 0")
    assert "oldestUnackedAt" not in drained and drained["lastDeliveryAt"]

    # -- a reconcile that changes the Deployment keeps both Secrets as they are -----------------
    r = kube.request("PATCH", f"{TENANTS.format(ns=ns)}/{name}", json={"spec": {"events": {
        "retention": {"maxEvents": 5000}}}},
        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text

    def rolled():
        ps = pods(kube, ns, name)
        return len(ps) == 1 and {e["name"]: e.get("value") for e in ps[0]["spec"][
            "containers"][0]["env"]}["JOYN_SCIM_EVENTS_RETENTION_COUNT"] == "5000" and ps
    eventually(rolled, timeout=120, what="the server's pod with the new retention")
    assert data(secret(kube, ns, f"{name}-scim-events-token")) == receiver
    assert data(secret(kube, ns, f"{name}-scim-events-signing-key")) == keys
    server = Server(kube, ns, name)
    assert eventually(server.jwks_kids, what="the new pod's JWKS") == [first_kid]

    # -- a signing-key rotation: the new key signs, the previous one stays published -----------
    r = kube.request("PATCH", f"{TENANTS.format(ns=ns)}/{name}", json={"metadata": {
        "annotations": {"scim.sevenlakes.com/rotate-events-signing-key": "e2e-1"}}},
        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    rotated = eventually(lambda: "previous-signing-keys.pem" in (s := data(secret(
        kube, ns, f"{name}-scim-events-signing-key"))) and s, what="the rotation")
    new_kid = kid(rotated["signing-key.pem"])
    assert new_kid != first_kid
    previous = serialization.load_pem_public_key(rotated["previous-signing-keys.pem"].encode())
    assert previous.public_numbers() == private.public_key().public_numbers()
    assert "PRIVATE" not in rotated["previous-signing-keys.pem"]  # only the public half stays
    assert data(secret(kube, ns, f"{name}-scim-events-token")) == receiver  # the other, kept
    # The kubelet refreshes the Secret volume; the server re-reads its key files.
    eventually(lambda: server.jwks_kids() == [new_kid, first_kid], timeout=60,
               what="both keys published, the new one first")
    until = events_status(kube, ns, name)["signingKey"]["previousValidUntil"]
    assert until
    # At the overlap's end the previous key goes from the Secret and then from the JWKS.
    eventually(lambda: "previous-signing-keys.pem" not in data(secret(
        kube, ns, f"{name}-scim-events-signing-key")), timeout=KEY_OVERLAP + 60,
        what="the previous key dropped at its deadline")
    eventually(lambda: server.jwks_kids() == [new_kid], timeout=60,
               what="only the new key published")
    assert "previousValidUntil" not in events_status(kube, ns, name)["signingKey"]
