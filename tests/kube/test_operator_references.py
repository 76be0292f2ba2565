"""What a tenant refers to but the operator does not make (a bring-your-own token Secret, a
TLS Secret, the IngressClass), and a host and path two tenants claim: the operator watches them
and the tenant follows within seconds. The operator here resyncs only every 10 minutes, so
nothing but those watches can explain a quick recovery."""

from __future__ import annotations

import base64
import secrets

import pytest

from .conftest import eventually, module_namespace, module_operator
from .test_operator import (
    INGRESSES,
    SECRETS,
    child,
    conditions_of,
    create_tenant,
    tenants_url,
)

QUICK = 20  # seconds: a watch event, not the resync


@pytest.fixture(scope="module")
def ns(kube, tenant_crd):
    yield from module_namespace(kube, "refs")


@pytest.fixture(scope="module")
def operator(cluster, ns, tmp_path_factory, request):
    yield from module_operator(cluster, ns, tmp_path_factory, request, DOMAIN="scim.test",
                               SERVER_IMAGE=cluster.images.app, INGRESS_CLASS="traefik",
                               RESYNC_SECONDS="600")


def reason(kube, ns, name, condition: str) -> str | None:
    return (conditions_of(kube, ns, name).get(condition) or {}).get("reason")


def at_rest(kube, ns, name) -> None:
    """Wait until the tenant's server runs: its children then send no more events, so only a
    watch on the referenced object can explain what the tenant does next."""
    eventually(lambda: reason(kube, ns, name, "Progressing") == "Stable",
               what="the tenant's server to run")


def test_a_byo_token_secret_that_appears_later_is_seen_at_once(kube, ns, operator):
    secret = f"vault-{secrets.token_hex(3)}"
    name = create_tenant(kube, ns, token={"existingSecretRef": {"name": secret}})
    ready = eventually(lambda: (c := conditions_of(kube, ns, name).get("Ready")) and
                       c["reason"] == "TokenMissing" and c, what="Ready=False/TokenMissing")
    assert f"Secret {secret}" in ready["message"] and "does not exist" in ready["message"]
    r = kube.create(SECRETS.format(ns=ns), {"apiVersion": "v1", "kind": "Secret",
                                            "metadata": {"name": secret},
                                            "data": {"token": base64.b64encode(
                                                secrets.token_urlsafe(32).encode()).decode()}})
    assert r.status_code == 201
    eventually(lambda: reason(kube, ns, name, "Ready") != "TokenMissing", timeout=QUICK,
               what="the tenant to see its token")


def test_a_tls_secret_that_appears_later_is_seen_at_once(kube, ns, operator):
    tls = f"cert-{secrets.token_hex(3)}"
    name = create_tenant(kube, ns, ingress={"tls": {"secretName": tls}})
    eventually(lambda: reason(kube, ns, name, "IngressReady") == "TLSSecretMissing",
               what="IngressReady=False/TLSSecretMissing")
    at_rest(kube, ns, name)
    r = kube.create(SECRETS.format(ns=ns), {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": tls},
        "data": {"tls.crt": base64.b64encode(b"x").decode(),
                 "tls.key": base64.b64encode(b"y").decode()}})
    assert r.status_code == 201, r.text
    eventually(lambda: reason(kube, ns, name, "IngressReady") != "TLSSecretMissing",
               timeout=QUICK, what="the tenant to see its TLS Secret")


def test_an_ingress_class_that_appears_later_is_seen_at_once(kube, ns, operator):
    cls = f"late-{secrets.token_hex(3)}"
    name = create_tenant(kube, ns, ingress={"className": cls})
    eventually(lambda: reason(kube, ns, name, "IngressReady") == "IngressClassNotFound",
               what="IngressReady=False/IngressClassNotFound")
    at_rest(kube, ns, name)
    path = "/apis/networking.k8s.io/v1/ingressclasses"
    r = kube.create(path, {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
                           "metadata": {"name": cls},
                           "spec": {"controller": "example.com/none"}})
    assert r.status_code == 201, r.text
    try:
        eventually(lambda: reason(kube, ns, name, "IngressReady") != "IngressClassNotFound",
                   timeout=QUICK, what="the tenant to see its IngressClass")
    finally:
        kube.delete(f"{path}/{cls}")


def test_the_second_tenant_on_a_host_and_path_is_refused_until_the_first_goes(
        kube, ns, operator):
    host = f"shared-{secrets.token_hex(3)}.scim.test"
    first = create_tenant(kube, ns, ingress={"host": host})
    eventually(lambda: child(kube, ns, INGRESSES, f"{first}-scim"), what="the first Ingress")
    second = create_tenant(kube, ns, ingress={"host": host})
    degraded = eventually(lambda: (c := conditions_of(kube, ns, second).get("Degraded")) and
                          c["reason"] == "HostConflict" and c, what="Degraded=HostConflict")
    assert f"{ns}/{first}" in degraded["message"] and host in degraded["message"]
    assert reason(kube, ns, second, "Ready") == "HostConflict"
    assert child(kube, ns, INGRESSES, f"{second}-scim") is None
    # A different path on the same host is no conflict.
    third = create_tenant(kube, ns, ingress={"host": host, "path": "/third/scim/v2"})
    eventually(lambda: child(kube, ns, INGRESSES, f"{third}-scim"), what="the third Ingress")
    assert reason(kube, ns, third, "Degraded") != "HostConflict"
    kube.delete(f"{tenants_url(ns)}/{first}")
    eventually(lambda: child(kube, ns, INGRESSES, f"{second}-scim"), timeout=QUICK,
               what="the second tenant's Ingress once the first is gone")
    eventually(lambda: reason(kube, ns, second, "Degraded") != "HostConflict", timeout=QUICK,
               what="the conflict to clear")
