"""Services and NetworkPolicies on the node (hack/kube/node.py). kube-proxy (nftables mode)
sends a Service's ClusterIP to its pod from the host, from a pod of another namespace and from
the pod itself (hairpin); kube-network-policies lets a connection through when a NetworkPolicy
admits it and drops it when not: a receiver pod in another namespace reaches the tenant's
server through the tenant's Service, admitted by the tenant's NetworkPolicy, and a pod of a
namespace the policy does not admit cannot."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace

import httpx
import pytest

from .conftest import ClientPod, eventually

PORT = 8080  # the server's (the image's JOYN_SCIM_PORT); the Service's port is 80


def _status(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture(scope="module")
def net(kube, cluster):
    """A tenant namespace with the SCIM server (the app image) behind a ClusterIP Service, and
    two other namespaces, `a` and `b`, for clients."""
    names = {k: kube.namespace(f"net-{k}") for k in ("tenant", "a", "b")}
    tenant = names["tenant"]
    pod = {"metadata": {"name": "server", "labels": {"app": "server"}}, "spec": {
        "automountServiceAccountToken": False, "containers": [{
            "name": "server", "image": cluster.images.app, "imagePullPolicy": "Never",
            "args": ["serve"], "env": [{"name": "JOYN_SCIM_DATA_DIR", "value": "/tmp"},
                                       {"name": "JOYN_SCIM_TOKEN_FILES", "value": "/tmp/none"}]}]}}
    assert kube.create(f"/api/v1/namespaces/{tenant}/pods", pod).status_code == 201
    service = {"metadata": {"name": "server"}, "spec": {
        "selector": {"app": "server"}, "ports": [{"port": 80, "targetPort": PORT}]}}
    r = kube.create(f"/api/v1/namespaces/{tenant}/services", service)
    assert r.status_code == 201, r.text
    cluster_ip = r.json()["spec"]["clusterIP"]
    # Served once the server answers and kube-proxy has the EndpointSlice the pod's readiness
    # puts it in: the host reaches the ClusterIP.
    eventually(lambda: _status(f"http://{cluster_ip}/healthz") == 200, timeout=120,
               what="the server to answer on its Service's ClusterIP")
    pod_ip = kube.get(f"/api/v1/namespaces/{tenant}/pods/server").json()["status"]["podIP"]
    yield SimpleNamespace(**names, cluster_ip=cluster_ip, pod_ip=pod_ip,
                          service_url=f"http://{cluster_ip}/healthz",
                          pod_url=f"http://{pod_ip}:{PORT}/healthz")
    for name in names.values():
        kube.delete(f"/api/v1/namespaces/{name}")


def test_a_service_gets_a_cluster_ip_of_the_service_range_that_the_host_reaches(net, cluster):
    assert ipaddress.ip_address(net.cluster_ip) in ipaddress.ip_network(cluster.node.service_range)
    assert net.cluster_ip != net.pod_ip
    assert _status(net.service_url) == 200


def test_pods_reach_a_service_from_another_namespace_and_from_its_own_pod(net, kube, cluster):
    clients = [ClientPod(kube, cluster.images.base, ns, "via-service", [(net.service_url, 10)])
               for ns in (net.a, net.b)]
    # Hairpin: the server's own pod, sent by kube-proxy to itself.
    hairpin = cluster.cp.kubectl(
        "-n", net.tenant, "exec", "server", "--", "python", "-c",
        f"import urllib.request as u; print(u.urlopen({net.service_url!r}, timeout=10).status)")
    assert hairpin.strip() == "200"
    for client in clients:
        [result] = client.results()
        assert result.get("status") == 200, result


def test_a_network_policy_admits_namespace_a_and_refuses_namespace_b(
        net, kube, cluster, network_policies_enforced):
    policy = {"metadata": {"name": "server"}, "spec": {
        "podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": net.a}}}],
            "ports": [{"port": PORT, "protocol": "TCP"}]}]}}
    r = kube.create(f"/apis/networking.k8s.io/v1/namespaces/{net.tenant}/networkpolicies",
                    policy)
    assert r.status_code == 201, r.text
    # Made after the policy, whose watch event reaches kube-network-policies well before a
    # pod starts. b's refusal is a timeout (its packets are dropped), through the Service and
    # straight to the pod; a's client has longer, since its pod's first packet may come before
    # kube-network-policies knows the pod's address (containerd 1.6 has no NRI to tell it
    # sooner) and is dropped like an unknown peer's, then retransmitted a second later.
    refused = ClientPod(kube, cluster.images.base, net.b, "refused",
                        [(net.service_url, 3), (net.pod_url, 3)])
    admitted = ClientPod(kube, cluster.images.base, net.a, "admitted", [(net.service_url, 10)])
    for result in refused.results():
        assert "status" not in result and "timed out" in result["error"], result
    # ... while the server is up and reachable for what the policy admits.
    [result] = admitted.results()
    assert result.get("status") == 200, result
    # The node's own connections are not policed (the ingress controller and the operator
    # run on the host here).
    assert _status(net.service_url) == 200
