"""The JoynScimTenant CRD (crds/) on the real API server: defaults, validation messages,
immutability rules and pruning, as a platform engineer applying tenants would see them."""

from __future__ import annotations

import copy
import secrets

import pytest

from .conftest import Kube


@pytest.fixture(scope="module")
def tenants(kube: Kube, tenant_crd):
    ns = f"crd-{secrets.token_hex(4)}"
    assert kube.create("/api/v1/namespaces", {"metadata": {"name": ns}}).status_code == 201
    return f"{tenant_crd}/namespaces/{ns}/joynscimtenants"


def tenant(name: str | None = None, **spec) -> dict:
    return {"apiVersion": "scim.sevenlakes.com/v1alpha1", "kind": "JoynScimTenant",
            "metadata": {"name": name or f"t-{secrets.token_hex(3)}"},
            "spec": {"displayName": "Acme Field Services", **spec}}


def test_minimal_tenant_gets_defaults(kube, tenants):
    r = kube.create(tenants, tenant())
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert spec["ingress"] == {"enabled": True, "path": "/scim/v2"}
    assert spec["token"] == {"previousTokenValidFor": "72h"}
    # No size: a stored default would hide the operator's (tenantDefaults) for ever.
    assert spec["storage"] == {"deletionPolicy": "Retain"}
    assert spec["server"] == {"logLevel": "info"}
    assert spec["networkPolicy"] == {"enabled": True}
    # The event stream is off, with the server's own defaults shown (scim_server/events).
    assert spec["events"] == {"enabled": False, "audience": "joyn-fsm",
                              "retention": {"maxAge": "336h", "maxEvents": 1000000},
                              "previousTokenValidFor": "72h",
                              "previousSigningKeyValidFor": "24h"}


def test_full_tenant_is_accepted_and_unknown_fields_pruned(kube, tenants):
    body = tenant(
        ingress={"host": "acme.scim.example.com", "path": "/acme/scim/v2", "className": "nginx",
                 "annotations": {"a": "b"}, "labels": {"team": "x"},
                 "tls": {"issuerRef": {"name": "letsencrypt"}}},
        token={"previousTokenValidFor": "24h30m"},
        storage={"size": "2Gi", "storageClassName": "fast", "deletionPolicy": "Delete"},
        server={"image": "registry.example/joyn-scim:1.0", "logLevel": "debug",
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "nodeSelector": {"pool": "apps"},
                "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"x": 1}}, "podAnnotations": {"p": "q"}},
        events={"enabled": True, "audience": "fsm-prod",
                "retention": {"maxAge": "48h", "maxEvents": 5000},
                "push": {"url": "https://fsm.example.com/scim-events?tenant=acme",
                         "authorizationSecretRef": {"name": "fsm-push"}},
                "receivers": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fsm"}},
                     "podSelector": {"matchExpressions": [
                         {"key": "app", "operator": "In", "values": ["fsm-api"]}]}},
                    {"podSelector": {"matchLabels": {"app": "fsm-sync"}}}],
                "previousTokenValidFor": "24h", "previousSigningKeyValidFor": "1h"},
        bogus="dropped")
    r = kube.create(tenants, body)
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert "bogus" not in spec
    assert spec["events"]["push"]["authorizationSecretRef"] == {"name": "fsm-push",
                                                               "key": "authorization"}
    assert spec["events"]["receivers"] == body["spec"]["events"]["receivers"]
    assert spec["ingress"]["tls"]["issuerRef"] == {
        "name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert spec["server"]["affinity"] == {"nodeAffinity": {"x": 1}}


def test_a_postgresql_tenant_with_replicas_is_accepted(kube, tenants):
    for storage in ({"postgresql": {"connectionSecretRef": {"name": "acme-app"}}},
                    {"postgresql": {"cluster": {"name": "pg", "namespace": "databases"}},
                     "deletionPolicy": "Delete"}):
        r = kube.create(tenants, tenant(storage=storage, server={"replicas": 3}))
        assert r.status_code == 201, r.text
        assert r.json()["spec"]["storage"]["postgresql"] == storage["postgresql"]
        assert r.json()["spec"]["server"]["replicas"] == 3


@pytest.mark.parametrize("name,spec,message", [
    ("bad-host", {"ingress": {"host": "Acme_Corp.example.com"}}, "spec.ingress.host"),
    ("bad-path", {"ingress": {"path": "scim/v2"}}, "spec.ingress.path"),
    ("both-tls", {"ingress": {"tls": {"secretName": "s", "issuerRef": {"name": "i"}}}},
     "either secretName"),
    ("bad-policy", {"storage": {"deletionPolicy": "Shred"}}, "spec.storage.deletionPolicy"),
    ("bad-level", {"server": {"logLevel": "verbose"}}, "spec.server.logLevel"),
    ("bad-duration", {"token": {"previousTokenValidFor": "3 days"}},
     "spec.token.previousTokenValidFor"),
    ("bad-size", {"storage": {"size": "lots"}}, "spec.storage.size"),
    # Values the operator could not use: an empty duration, names it puts into API paths.
    ("empty-duration", {"token": {"previousTokenValidFor": ""}},
     "spec.token.previousTokenValidFor"),
    ("path-in-secret", {"token": {"existingSecretRef": {"name": "../../secrets/x"}}},
     "spec.token.existingSecretRef.name"),
    ("bad-secret-key", {"token": {"existingSecretRef": {"name": "s", "key": "a/b"}}},
     "spec.token.existingSecretRef.key"),
    ("bad-tls-secret", {"ingress": {"tls": {"secretName": "My Cert"}}},
     "spec.ingress.tls.secretName"),
    ("bad-class", {"ingress": {"className": "nginx/internal"}}, "spec.ingress.className"),
    ("bad-issuer", {"ingress": {"tls": {"issuerRef": {"name": "LE prod"}}}},
     "spec.ingress.tls.issuerRef.name"),
    ("bad-storage-class", {"storage": {"storageClassName": "Fast SSD"}},
     "spec.storage.storageClassName"),
    ("bad-ingress-ns", {"networkPolicy": {"ingressNamespace": "ingress.nginx"}},
     "spec.networkPolicy.ingressNamespace"),
    # The event stream: what the server or a NetworkPolicy could not use, said in words.
    ("push-ftp", {"events": {"push": {"url": "ftp://fsm.example.com/in"}}},
     "events.push.url must be an http:// or https:// URL"),
    ("push-userinfo", {"events": {"push": {"url": "https://fsm:s3cret@fsm.example.com/in"}}},
     "no user:password@"),
    ("push-no-host", {"events": {"push": {"url": "https:///in"}}}, "with a host"),
    ("push-no-url", {"events": {"push": {"authorizationSecretRef": {"name": "s"}}}},
     "spec.events.push.url: Required value"),
    ("empty-receiver", {"events": {"receivers": [{}]}},
     "needs a namespaceSelector, a podSelector, or both"),
    ("bad-selector-op", {"events": {"receivers": [{"podSelector": {"matchExpressions": [
        {"key": "app", "operator": "Like"}]}}]}}, "matchExpressions[0].operator"),
    ("bad-retention", {"events": {"retention": {"maxAge": "2 weeks"}}},
     "spec.events.retention.maxAge"),
    ("zero-retention", {"events": {"retention": {"maxEvents": 0}}},
     "spec.events.retention.maxEvents"),
    ("bad-audience", {"events": {"audience": "joyn fsm"}}, "spec.events.audience"),
    # The server pod's scheduling and pull settings.
    ("pull-secret-no-name", {"server": {"imagePullSecrets": [{}]}},
     "spec.server.imagePullSecrets[0].name: Required value"),
    ("bad-pull-secret", {"server": {"imagePullSecrets": [{"name": "My Registry"}]}},
     "spec.server.imagePullSecrets[0].name"),
    ("bad-priority-class", {"server": {"priorityClassName": "High Priority"}},
     "spec.server.priorityClassName"),
    ("bad-spread", {"server": {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Sometimes"}]}},
     "spec.server.topologySpreadConstraints[0].whenUnsatisfiable"),
    ("bad-pod-label", {"server": {"podLabels": {"tier": 1}}}, "spec.server.podLabels.tier"),
    ("bad-events-overlap", {"events": {"previousSigningKeyValidFor": "1d"}},
     "spec.events.previousSigningKeyValidFor"),
    ("bad-push-secret", {"events": {"push": {"url": "https://x.example",
                                             "authorizationSecretRef": {"name": "A B"}}}},
     "spec.events.push.authorizationSecretRef.name"),
    # PostgreSQL: what the operator could not make work, refused when applied.
    ("replicas-on-sqlite", {"server": {"replicas": 2}},
     "server.replicas above 1 needs storage.postgresql"),
    ("pg-both", {"storage": {"postgresql": {"connectionSecretRef": {"name": "db"},
                                            "cluster": {"name": "pg"}}}},
     "either connectionSecretRef"),
    ("pg-neither", {"storage": {"postgresql": {}}}, "either connectionSecretRef"),
    ("pg-with-volume", {"storage": {"size": "2Gi", "postgresql": {"cluster": {"name": "pg"}}}},
     "storage.size and storage.storageClassName are the SQLite volume's"),
    ("pg-bad-secret", {"storage": {"postgresql": {"connectionSecretRef": {"name": "../x"}}}},
     "spec.storage.postgresql.connectionSecretRef.name"),
    ("too-many-replicas", {"server": {"replicas": 11}, "storage": {
        "postgresql": {"cluster": {"name": "pg"}}}}, "spec.server.replicas"),
    ("1starts-with-digit", {}, "DNS-1035 label"),
    ("a" * 41, {}, "at most 40 characters"),
])
def test_invalid_tenants_are_rejected_with_a_clear_message(kube, tenants, name, spec, message):
    r = kube.create(tenants, tenant(name, **spec))
    assert r.status_code == 422, r.text
    assert message in r.json()["message"]


def test_missing_display_name_is_rejected(kube, tenants):
    body = tenant()
    del body["spec"]["displayName"]
    r = kube.create(tenants, body)
    assert r.status_code == 422 and "spec.displayName: Required value" in r.json()["message"]


@pytest.mark.parametrize("change,message", [
    (lambda s: s["storage"].update(storageClassName="other"), "storageClassName cannot change"),
    (lambda s: s["storage"].update(size="500Mi"), "can grow but not shrink"),
    (lambda s: s["token"].update(existingSecretRef={"name": "mine"}),
     "existingSecretRef cannot be added or removed"),
])
def test_immutable_fields(kube, tenants, change, message):
    created = kube.create(tenants, tenant(storage={"size": "1Gi", "storageClassName": "fast"}))
    assert created.status_code == 201, created.text
    obj = created.json()
    updated = copy.deepcopy(obj)
    change(updated["spec"])
    r = kube.request("PUT", f"{tenants}/{obj['metadata']['name']}", json=updated)
    assert r.status_code == 422, r.text
    assert message in r.json()["message"]
    grow = copy.deepcopy(obj)
    grow["spec"]["storage"]["size"] = "5Gi"
    assert kube.request("PUT", f"{tenants}/{obj['metadata']['name']}", json=grow).status_code \
        == 200


def test_printer_columns_and_short_name(kube, tenants, control_plane):
    import subprocess
    name = f"t-{secrets.token_hex(3)}"
    kube.create(tenants, tenant(name))
    ns = tenants.split("/")[5]
    kubectl = [str(control_plane.bins / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}"]
    out = subprocess.run([*kubectl, "-n", ns, "get", "jst", name, "-o", "wide"], check=True,
                         capture_output=True, text=True).stdout
    header = out.splitlines()[0].split()
    assert header == ["NAME", "READY", "URL", "AGE", "REASON", "TOKEN-AGE", "LAST-REQUEST",
                      "EVENTS-BACKLOG", "IMAGE", "PENDING-IMAGE"]
    cats = subprocess.run([*kubectl, "-n", ns, "get", "joyn", "-o", "name"], check=True,
                          capture_output=True, text=True).stdout
    assert f"joynscimtenant.scim.sevenlakes.com/{name}" in cats
