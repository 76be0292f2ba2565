"""Ready means Entra can connect, on the real node.

Certificates: cert-manager's controller (built from the Go module proxy, hack/cert-manager),
run as a process against the test control plane: the node has no cert-manager image and none
is pulled, and a process talks to the API server exactly as its pod would. Its webhook is not
run: it only validates and defaults cert-manager's own objects, which are written correctly
here. A self-signed ClusterIssuer makes a CA, a CA ClusterIssuer signs the tenants'
certificates (no internet), and a tenant is CertificatePending until cert-manager has issued
its certificate, CertificateFailed while its issuer cannot issue, then Ready.

The route: a Traefik pod (the harness's Traefik binary, from the node's hostPath: there is no
Traefik image) behind a ClusterIP Service, in a namespace of its own, so that the enforcing
NetworkPolicies (kube-network-policies) judge its connections to the tenant's server, as on a
real cluster. The harness's own Traefik runs on the host, whose connections no policy judges.
The operator sends Entra's Test Connection through that Service: a NetworkPolicy that admits
the wrong namespace (or the right namespace's other pods) makes the tenant RouteUnreachable,
the right one Ready.
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import subprocess
import threading

import httpx
import pytest

from .conftest import built, eventually, free_port, module_namespace, module_operator
from .test_operator import conditions_of, create_tenant, tenants_url

CERTS = "/apis/cert-manager.io/v1"


def ready(kube, ns, name) -> dict:
    return conditions_of(kube, ns, name).get("Ready") or {}


class Reasons:
    """Every reason a condition of one tenant showed, from a watch (a poll could miss one
    that lasts a moment)."""

    def __init__(self, kube, ns: str, name: str, condition: str) -> None:
        self.seen: list[str] = []
        self._stop = False
        url = f"{tenants_url(ns)}"
        params = {"watch": "true", "fieldSelector": f"metadata.name={name}",
                  "timeoutSeconds": "300"}
        # A client of its own: the thread's long request must not hold the shared one's.
        http = httpx.Client(base_url=kube.cp.server, headers=kube.http.headers, timeout=None,
                            verify=ssl.create_default_context(cafile=str(kube.cp.ca_file)))

        def follow() -> None:
            try:
                with http, http.stream("GET", url, params=params) as r:
                    for line in r.iter_lines():
                        if self._stop:
                            return
                        obj = json.loads(line).get("object") or {}
                        for c in (obj.get("status") or {}).get("conditions") or []:
                            if c["type"] == condition and (not self.seen or
                                                           self.seen[-1] != c["reason"]):
                                self.seen.append(c["reason"])
            except httpx.TransportError:
                # Once stopped, the watch ends with its next event or when the session's API
                # server stops, which breaks the stream: that is not a failure.
                if not self._stop:
                    raise

        self.thread = threading.Thread(target=follow, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self._stop = True


# -- cert-manager --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cert_manager(cluster, kube, tmp_path_factory):
    """cert-manager's CRDs and controller; yields its cluster resource namespace (where a
    ClusterIssuer's Secrets live)."""
    bins = built("cert-manager", "CERT_MANAGER_BINS_DIR", "cert-manager's controller is")
    cluster.cp.kubectl("apply", "--server-side", "-f", str(bins / "crds"))
    cluster.cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(
        f"crd/{plural}.cert-manager.io"
        for plural in ("certificates", "certificaterequests", "clusterissuers", "issuers")))
    ns = kube.namespace("cert-manager")
    log = tmp_path_factory.mktemp("cert-manager") / "controller.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen([
            str(bins / "controller"), f"--kubeconfig={cluster.cp.kubeconfig}",
            "--leader-elect=false", f"--cluster-resource-namespace={ns}",
            f"--metrics-listen-address=127.0.0.1:{free_port()}", "--v=2"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    yield ns
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    print(f"--- cert-manager log ---\n{log.read_text()[-4000:]}")
    kube.delete(f"/api/v1/namespaces/{ns}")
    for crd in ("certificates", "certificaterequests", "clusterissuers", "issuers", "orders",
                "challenges"):
        group = "acme.cert-manager.io" if crd in ("orders", "challenges") else "cert-manager.io"
        kube.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd}.{group}")


def apply(kube, url: str, obj: dict) -> None:
    r = kube.create(url, obj)
    assert r.status_code == 201, r.text


def issuer_ready(kube, name: str) -> bool:
    r = kube.get(f"{CERTS}/clusterissuers/{name}")
    return r.status_code == 200 and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in (r.json().get("status") or {}).get("conditions") or [])


def make_ca(kube, cert_ns: str, secret: str) -> None:
    """A CA certificate, self-signed by cert-manager, into `secret` of `cert_ns`."""
    selfsigned = f"selfsigned-{secrets.token_hex(3)}"
    apply(kube, f"{CERTS}/clusterissuers", {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": selfsigned}, "spec": {"selfSigned": {}}})
    apply(kube, f"{CERTS}/namespaces/{cert_ns}/certificates", {
        "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
        "metadata": {"name": secret}, "spec": {
            "isCA": True, "commonName": "joyn-scim test CA", "secretName": secret,
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": selfsigned, "kind": "ClusterIssuer",
                          "group": "cert-manager.io"}}})


def ca_issuer(kube, secret: str) -> str:
    name = f"ca-{secrets.token_hex(3)}"
    apply(kube, f"{CERTS}/clusterissuers", {
        "apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": name}, "spec": {"ca": {"secretName": secret}}})
    return name


@pytest.fixture(scope="module")
def certs_ns(kube, tenant_crd, cert_manager):
    yield from module_namespace(kube, "certs")


@pytest.fixture(scope="module")
def certs_operator(cluster, certs_ns, tmp_path_factory, request):
    # Started after cert-manager's CRDs exist, so it watches Certificates; the resync is
    # long, so only that watch explains a tenant that follows its certificate.
    yield from module_operator(cluster, certs_ns, tmp_path_factory, request,
                               DOMAIN="scim.example.com", SERVER_IMAGE=cluster.images.app,
                               INGRESS_CLASS="traefik", RESYNC_SECONDS="600")


def test_a_tenant_is_certificate_pending_until_cert_manager_has_issued_it(
        kube, cluster, cert_manager, certs_ns, certs_operator):
    ca_secret = f"ca-{secrets.token_hex(3)}"
    make_ca(kube, cert_manager, ca_secret)
    issuer = ca_issuer(kube, ca_secret)
    eventually(lambda: issuer_ready(kube, issuer), timeout=60, what="the CA issuer to be Ready")
    name = f"t{secrets.token_hex(3)}"
    reasons = Reasons(kube, certs_ns, name, "IngressReady")
    create_tenant(kube, certs_ns, name, ingress={"tls": {"issuerRef": {"name": issuer}}})
    try:
        c = eventually(lambda: (r := ready(kube, certs_ns, name)).get("status") == "True" and r,
                       timeout=120, what="the tenant to be Ready")
    finally:
        reasons.stop()
    assert c["reason"] == "Ready"
    assert "CertificatePending" in reasons.seen, reasons.seen
    assert reasons.seen[-1] == "IngressReady", reasons.seen
    cert = kube.get(f"{CERTS}/namespaces/{certs_ns}/certificates/{name}-tls").json()
    assert cert["spec"]["dnsNames"] == [f"{name}.scim.example.com"]


def test_an_issuer_that_cannot_issue_fails_the_tenant_in_its_own_words_until_it_can(
        kube, cluster, cert_manager, certs_ns, certs_operator):
    ca_secret = f"ca-{secrets.token_hex(3)}"
    issuer = ca_issuer(kube, ca_secret)  # whose CA Secret does not exist
    name = create_tenant(kube, certs_ns, ingress={"tls": {"issuerRef": {"name": issuer}}})
    c = eventually(lambda: (r := ready(kube, certs_ns, name)).get("reason") ==
                   "CertificateFailed" and r, timeout=120, what="Ready=False/CertificateFailed")
    assert c["status"] == "False"
    assert f"Certificate {name}-tls: ClusterIssuer {issuer} is not ready" in c["message"]
    assert ca_secret in c["message"], c["message"]  # cert-manager's words: the Secret is missing
    # The CA appears: cert-manager issues, and the tenant follows.
    make_ca(kube, cert_manager, ca_secret)
    eventually(lambda: ready(kube, certs_ns, name).get("status") == "True", timeout=120,
               what="the tenant to be Ready once its issuer can issue")


# -- the route, through an ingress controller the NetworkPolicy judges ----------------------------

@pytest.fixture(scope="module")
def edge(cluster, kube):
    """A Traefik pod and its Service in a namespace of their own; yields (namespace, the
    Service's address as host:port)."""
    ns = kube.namespace("edge")
    sa = "traefik"
    assert kube.create(f"/api/v1/namespaces/{ns}/serviceaccounts",
                       {"metadata": {"name": sa}}).status_code == 201
    binding = f"joyn-scim-test-edge-{ns}"
    # The ClusterRole the harness gives its own Traefik (hack/kube/ingress.py).
    apply(kube, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "metadata": {"name": binding},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "joyn-scim-ingress-controller"},
        "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]})
    apply(kube, f"/api/v1/namespaces/{ns}/pods", {
        "metadata": {"name": "traefik", "labels": {"app": "traefik"}},
        "spec": {"serviceAccountName": sa, "containers": [{
            "name": "traefik", "image": cluster.images.base, "imagePullPolicy": "Never",
            "command": ["/opt/node-bins/traefik", "--global.checknewversion=false",
                        "--global.sendanonymoususage=false", "--log.level=INFO",
                        "--entrypoints.websecure.address=:8443",
                        "--entrypoints.websecure.http.tls=true",
                        "--entrypoints.traefik.address=:9000", "--ping=true",
                        "--providers.kubernetesingress=true"],
            "readinessProbe": {"httpGet": {"path": "/ping", "port": 9000},
                               "periodSeconds": 1},
            "volumeMounts": [{"name": "bins", "mountPath": "/opt/node-bins",
                              "readOnly": True}]}],
            "volumes": [{"name": "bins", "hostPath": {"path": str(cluster.node_bins),
                                                      "type": "Directory"}}]}})
    r = kube.create(f"/api/v1/namespaces/{ns}/services", {
        "metadata": {"name": "traefik"}, "spec": {
            "selector": {"app": "traefik"}, "ports": [{"port": 443, "targetPort": 8443}]}})
    assert r.status_code == 201, r.text
    address = f"{r.json()['spec']['clusterIP']}:443"

    def answers() -> bool:  # served through the Service: Traefik's 404 for an unknown host
        try:
            return httpx.get(f"https://{address}/", verify=False, timeout=2).status_code == 404
        except httpx.HTTPError:
            return False

    eventually(answers, timeout=120, what="the Traefik pod to answer through its Service")
    yield ns, address
    kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{binding}")
    kube.delete(f"/api/v1/namespaces/{ns}")


@pytest.fixture(scope="module")
def route_ns(kube, tenant_crd):
    yield from module_namespace(kube, "route")


@pytest.fixture(scope="module")
def route_operator(cluster, route_ns, edge, tmp_path_factory, request):
    yield from module_operator(cluster, route_ns, tmp_path_factory, request,
                               DOMAIN="scim.example.com", SERVER_IMAGE=cluster.images.app,
                               INGRESS_CLASS="traefik", ROUTE_CHECK_ADDRESS=edge[1],
                               ROUTE_CHECK_CA_FILE=str(cluster.ingress.ca_file),
                               ROUTE_CHECK_SECONDS="3")


def set_policy(kube, ns, name, network_policy: dict) -> None:
    r = kube.request("PATCH", f"{tenants_url(ns)}/{name}",
                     json={"spec": {"networkPolicy": network_policy}},
                     headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text


def reason_is(kube, ns, name, reason: str):
    return lambda: (r := ready(kube, ns, name)).get("reason") == reason and r


def test_a_network_policy_that_admits_the_wrong_ingress_namespace_fails_the_route(
        kube, cluster, edge, route_ns, route_operator, network_policies_enforced):
    edge_ns, address = edge
    name = f"t{secrets.token_hex(3)}"
    host = f"{name}.scim.example.com"
    cluster.ingress.issue(route_ns, f"{name}-own-tls", (host,))
    create_tenant(kube, route_ns, name, ingress={"tls": {"secretName": f"{name}-own-tls"}},
                  networkPolicy={"ingressNamespace": "ingress-nginx"})
    c = eventually(reason_is(kube, route_ns, name, "RouteUnreachable"), timeout=180,
                   what="Ready=False/RouteUnreachable")
    assert c["status"] == "False"
    assert f"https://{host}/scim/v2/Users?filter=userName eq <random>" in c["message"]
    assert address in c["message"]
    token = kube.get(f"/api/v1/namespaces/{route_ns}/secrets/{name}-scim-token").json()
    assert base64.b64decode(token["data"]["token"]).decode() not in c["message"]

    set_policy(kube, route_ns, name, {"ingressNamespace": edge_ns})
    c = eventually(lambda: (r := ready(kube, route_ns, name)).get("status") == "True" and r,
                   timeout=90, what="the tenant to be Ready once its policy admits the edge")
    assert c["reason"] == "Ready"


def test_a_peer_with_both_selectors_admits_those_pods_of_that_namespace_only(
        kube, cluster, edge, route_ns, route_operator, network_policies_enforced):
    # From refused to admitted only: a policy that narrows leaves the ingress controller's
    # open keep-alive connections to the server alone (connection tracking lets an
    # established connection through), so a narrowing shows only on its next connection.
    edge_ns, _ = edge
    name = f"t{secrets.token_hex(3)}"
    cluster.ingress.issue(route_ns, f"{name}-own-tls", (f"{name}.scim.example.com",))
    edge_selector = {"matchLabels": {"kubernetes.io/metadata.name": edge_ns}}
    create_tenant(kube, route_ns, name, ingress={"tls": {"secretName": f"{name}-own-tls"}},
                  networkPolicy={"ingressFrom": [{"namespaceSelector": edge_selector,
                                                  "podSelector": {"matchLabels": {
                                                      "app": "other"}}}]})
    eventually(reason_is(kube, route_ns, name, "RouteUnreachable"), timeout=180,
               what="RouteUnreachable when only the edge namespace's other pods are admitted")
    set_policy(kube, route_ns, name, {"ingressFrom": [
        {"namespaceSelector": edge_selector, "podSelector": {"matchLabels": {"app": "traefik"}}}]})
    eventually(lambda: ready(kube, route_ns, name).get("status") == "True", timeout=90,
               what="Ready when the edge's Traefik pods are admitted by both selectors")


@pytest.mark.parametrize("peer, words", [
    ({"ipBlock": {"cidr": "10.0.0.0/33"}}, "must be a CIDR such as 10.0.0.0/16"),
    ({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0"]}}, "must be a CIDR"),
    ({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}, "an ipBlock in networkPolicy."
     "ingressFrom stands alone"),
    ({}, "needs a namespaceSelector, a podSelector, both, or an ipBlock"),
])
def test_the_api_server_refuses_an_ingress_from_peer_a_network_policy_could_not_use(
        kube, tenant_crd, route_ns, peer, words):
    r = kube.create(tenants_url(route_ns), {
        "apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
        "metadata": {"name": f"bad-{secrets.token_hex(3)}"},
        "spec": {"displayName": "Acme", "networkPolicy": {"ingressFrom": [peer]}}})
    assert r.status_code == 422, r.text
    assert "spec.networkPolicy.ingressFrom[0]" in r.json()["message"]
    assert words in r.json()["message"], r.json()["message"]
