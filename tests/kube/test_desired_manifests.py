"""The operator's desired-state manifests are valid Kubernetes objects: the real API server
accepts each of them (server-side dry run), for representative tenant specs, and keeps
hostile strings in the free-text fields exactly as the tenant set them."""

from __future__ import annotations

import secrets

import pytest
from joyn_operator.config import OperatorConfig
from joyn_operator.desired import children, generated_secret, token_secret
from joyn_operator.signing import new_private_key
from joyn_operator.tenant import resolve

# Quotes, line breaks, template and YAML syntax: values annotations may hold.
HOSTILE = "'\"\n- a: {{ t.name }}\n#{% raw %}&x *x !!str |\n--- \\u0041 \U0001F600\u2028"

PATHS = {"PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
         "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
         "Service": "/api/v1/namespaces/{ns}/services",
         "Ingress": "/apis/networking.k8s.io/v1/namespaces/{ns}/ingresses",
         "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
         "Secret": "/api/v1/namespaces/{ns}/secrets"}

SPECS = {
    "defaults": {},
    "everything": {
        "ingress": {"host": "sso.acme.com", "path": "/acme/scim/v2", "className": "nginx",
                    "annotations": {"a": "b"}, "labels": {"team": "x"},
                    "tls": {"issuerRef": {"name": "le", "kind": "Issuer"}}},
        "storage": {"size": "5Gi", "storageClassName": "fast", "deletionPolicy": "Delete"},
        "server": {"resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
                   "nodeSelector": {"pool": "apps"},
                   "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoSchedule"}],
                   "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                       "nodeSelectorTerms": [{"matchExpressions": [
                           {"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
                   "podAnnotations": {"p": "q"}, "podLabels": {"tier": "gold"},
                   "priorityClassName": "tenants", "imagePullSecrets": [{"name": "registry"}],
                   "topologySpreadConstraints": [{
                       "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                       "whenUnsatisfiable": "ScheduleAnyway",
                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "joyn-scim"}}}]},
        "networkPolicy": {"ingressNamespace": "traefik"}},
    "byo-token": {"token": {"existingSecretRef": {"name": "vault", "key": "t"}},
                  "ingress": {"enabled": False}},
    "events": {"events": {
        "enabled": True, "audience": "fsm-prod", "retention": {"maxAge": "48h", "maxEvents": 10},
        "push": {"url": "https://fsm.example.com/in",
                 "authorizationSecretRef": {"name": "fsm-push", "key": "header"}},
        "receivers": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fsm"}},
             "podSelector": {"matchExpressions": [
                 {"key": "app", "operator": "In", "values": ["fsm-sync"]}]}},
            {"podSelector": {"matchLabels": {"app": "fsm"}}}]}},
    "hostile": {"ingress": {"annotations": {"example.com/note": HOSTILE}},
                "server": {"podAnnotations": {"example.com/note": HOSTILE}}},
}


@pytest.mark.parametrize("case", list(SPECS))
def test_children_pass_api_server_validation(kube, case):
    ns = f"dry-{secrets.token_hex(4)}"
    assert kube.create("/api/v1/namespaces", {"metadata": {"name": ns}}).status_code == 201
    cfg = OperatorConfig(domain="scim.example.com", ingress_class="nginx",
                         tls_issuer={"name": "default-issuer", "kind": "ClusterIssuer",
                                     "group": "cert-manager.io"})
    t = resolve({"metadata": {"name": "acme", "namespace": ns,
                              "uid": "8c0e1a8e-0b4e-4f8e-9b1e-0a6f0e2f7a11"},
                 "spec": {"displayName": "Acme", **SPECS[case]}}, cfg)
    objects = [*children(t), token_secret(t, {"token": secrets.token_urlsafe(32)}, {})]
    if t.events:
        objects += [generated_secret(t, t.events.token_secret,
                                     {"token": secrets.token_urlsafe(32)}, {}),
                    generated_secret(t, t.events.signing_key_secret,
                                     {"signing-key.pem": new_private_key()}, {})]
    answers = {}
    for obj in objects:
        r = kube.http.post(PATHS[obj["kind"]].format(ns=ns), json=obj,
                           params={"dryRun": "All", "fieldValidation": "Strict"})
        assert r.status_code == 201, f"{obj['kind']}: {r.text}"
        answers[obj["kind"]] = r.json()
    if case == "events":
        assert len(answers["NetworkPolicy"]["spec"]["ingress"]) == 2
    if case == "hostile":
        assert answers["Ingress"]["metadata"]["annotations"]["example.com/note"] == HOSTILE
        pod = answers["Deployment"]["spec"]["template"]["metadata"]
        assert pod["annotations"] == {"example.com/note": HOSTILE}
