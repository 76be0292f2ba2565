"""Desired-state builders (joyn_operator.desired), as pure functions, for representative specs."""

import base64

import pytest
from joyn_operator.config import OperatorConfig
from joyn_operator.desired import (
    Tenant,
    children,
    deployment,
    ingress,
    labels,
    network_policy,
    persistent_volume_claim,
    service,
    tenant_url,
    token_secret,
)

CFG = OperatorConfig(server_image="registry.example/joyn-scim:1.2.3", domain="scim.example.com",
                     ingress_class="nginx", ingress_namespace="ingress-nginx")
DEFAULTS = {"ingress": {"enabled": True, "path": "/scim/v2"},
            "token": {"previousTokenValidFor": "72h"},
            "storage": {"size": "1Gi", "deletionPolicy": "Retain"},
            "server": {"logLevel": "info"}, "networkPolicy": {"enabled": True}}


def tenant(**spec) -> Tenant:
    merged = {k: {**v, **spec.pop(k, {})} for k, v in DEFAULTS.items()}
    return Tenant("acme", "customers", "uid-1", {"displayName": "Acme", **merged, **spec})


def owner_uids(obj):
    return [o["uid"] for o in obj["metadata"].get("ownerReferences", [])]


def test_url_from_operator_domain_and_explicit_host():
    assert tenant_url(tenant(), CFG) == "https://acme.scim.example.com/scim/v2"
    t = tenant(ingress={"host": "sso.acme.com", "path": "/acme/scim/v2"})
    assert tenant_url(t, CFG) == "https://sso.acme.com/acme/scim/v2"
    assert tenant_url(tenant(), OperatorConfig()) is None  # no host, no domain
    http = OperatorConfig(domain="test.local", url_scheme="http")
    assert tenant_url(tenant(), http) == "http://acme.test.local/scim/v2"


def test_every_child_has_standard_labels_and_no_tenant_labels():
    for child in children(tenant(), CFG):
        assert child["metadata"]["labels"] == labels(tenant()) or \
            child["kind"] == "Ingress"
        assert child["metadata"]["namespace"] == "customers"
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == \
            "joyn-scim-operator"


def test_deployment_runs_the_server_hardened():
    d = deployment(tenant(server={"logLevel": "debug", "nodeSelector": {"pool": "a"},
                                  "podAnnotations": {"x": "y"}}), CFG)
    spec = d["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "registry.example/joyn-scim:1.2.3" and c["args"] == ["serve"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["JOYN_SCIM_BASE_PATH"] == "/scim/v2"
    assert env["JOYN_SCIM_PUBLIC_URL"] == "https://acme.scim.example.com/scim/v2"
    assert env["JOYN_SCIM_TOKEN_FILES"].split(",") == [
        "/var/run/joyn-scim/token/token", "/var/run/joyn-scim/token/previous-token"]
    assert env["JOYN_SCIM_LOG_LEVEL"] == "debug"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["nodeSelector"] == {"pool": "a"}
    assert spec["template"]["metadata"]["annotations"] == {"x": "y"}
    assert owner_uids(d) == ["uid-1"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "acme-scim-data"
    assert volumes["token"]["secret"]["secretName"] == "acme-scim-token"
    # every key, so that a Secret without previous-token still mounts (no `items`)
    assert "items" not in volumes["token"]["secret"]


def test_spec_image_overrides_the_operator_image():
    d = deployment(tenant(server={"image": "mine:2"}), CFG)
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "mine:2"


def test_bring_your_own_token_mounts_that_secret_only():
    d = deployment(tenant(token={"existingSecretRef": {"name": "vault-token", "key": "t"}}), CFG)
    vol = {v["name"]: v for v in d["spec"]["template"]["spec"]["volumes"]}["token"]
    assert vol["secret"] == {"secretName": "vault-token", "items": [{"key": "t",
                                                                    "path": "token"}]}


def test_ingress_with_issuer_host_path_and_merged_annotations():
    cfg = OperatorConfig(domain="scim.example.com", ingress_class="nginx",
                         ingress_annotations={"a": "default", "b": "default"})
    t = tenant(ingress={"annotations": {"b": "tenant"}, "labels": {"team": "x"},
                        "tls": {"issuerRef": {"name": "le", "kind": "ClusterIssuer"}}})
    ing = ingress(t, cfg)
    assert ing["metadata"]["annotations"] == {"a": "default", "b": "tenant",
                                              "cert-manager.io/cluster-issuer": "le"}
    assert ing["metadata"]["labels"]["team"] == "x"
    assert ing["spec"]["ingressClassName"] == "nginx"
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "acme.scim.example.com"
    assert rule["http"]["paths"][0]["path"] == "/scim/v2"
    assert ing["spec"]["tls"] == [{"hosts": ["acme.scim.example.com"], "secretName": "acme-tls"}]


def test_ingress_with_own_tls_secret_and_disabled_ingress():
    ing = ingress(tenant(ingress={"tls": {"secretName": "wild"}}), CFG)
    assert ing["spec"]["tls"][0]["secretName"] == "wild"
    assert "annotations" not in ing["metadata"]
    t = tenant(ingress={"enabled": False})
    assert ingress(t, CFG) is None
    assert tenant_url(t, CFG) == "https://acme.scim.example.com/scim/v2"  # still shown


def test_plain_http_when_no_tls_anywhere():
    cfg = OperatorConfig(domain="test.local", url_scheme="http")
    assert "tls" not in ingress(tenant(), cfg)["spec"]


@pytest.mark.parametrize("policy,owned", [("Retain", False), ("Delete", True)])
def test_deletion_policy_decides_ownership_of_volume_and_secret(policy, owned):
    t = tenant(storage={"deletionPolicy": policy})
    assert bool(owner_uids(persistent_volume_claim(t))) is owned
    assert bool(owner_uids(token_secret(t, CFG, "cur", None, {}))) is owned
    assert owner_uids(service(t)) == ["uid-1"]  # the rest is always owned


def test_token_secret_holds_current_previous_and_url():
    s = token_secret(tenant(), CFG, "cur", "old", {"scim.sevenlakes.com/issued-at": "t"})
    decoded = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert decoded == {"token": "cur", "previous-token": "old",
                       "url": "https://acme.scim.example.com/scim/v2"}
    assert s["metadata"]["annotations"] == {"scim.sevenlakes.com/issued-at": "t"}
    assert "previous-token" not in token_secret(tenant(), CFG, "cur", None, {})["data"]


def test_pvc_size_and_class():
    pvc = persistent_volume_claim(tenant(storage={"size": "5Gi", "storageClassName": "fast"}))
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                           "resources": {"requests": {"storage": "5Gi"}}}


def test_network_policy_admits_only_the_ingress_namespace():
    np = network_policy(tenant(), CFG)
    frm = np["spec"]["ingress"][0]["from"]
    assert frm == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx"}}}]
    custom = network_policy(tenant(networkPolicy={"ingressNamespace": "traefik"}), CFG)
    assert custom["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "traefik"}
    assert network_policy(tenant(networkPolicy={"enabled": False}), CFG) is None


def test_config_from_env():
    cfg = OperatorConfig.from_env({
        "JOYN_OPERATOR_SERVER_IMAGE": "img:1", "JOYN_OPERATOR_DOMAIN": "d.example",
        "JOYN_OPERATOR_TLS_ISSUER": "le", "JOYN_OPERATOR_INGRESS_ANNOTATIONS": "a=1, b=2",
        "JOYN_OPERATOR_WATCH_NAMESPACES": "one, two"})
    assert cfg.server_image == "img:1" and cfg.domain == "d.example"
    assert cfg.tls_issuer == {"name": "le", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert cfg.ingress_annotations == {"a": "1", "b": "2"}
    assert cfg.watch_namespaces == ("one", "two")
    assert OperatorConfig.from_env({}) == OperatorConfig()
