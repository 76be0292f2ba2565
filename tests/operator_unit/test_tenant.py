"""Resolving a tenant (joyn_operator.tenant): spec plus the operator's defaults, decided once."""

from datetime import timedelta

import pytest
from joyn_operator.config import OperatorConfig
from joyn_operator.tenant import Issuer, references, resolve, with_claim

CFG = OperatorConfig(server_image="registry.example/joyn-scim:1.2.3", domain="scim.example.com",
                     ingress_class="nginx", ingress_namespace="ingress-nginx")


def body(**spec) -> dict:
    return {"metadata": {"name": "acme", "namespace": "customers", "uid": "uid-1",
                         "generation": 3, "annotations": spec.pop("annotations", {})},
            "spec": {"displayName": "Acme", **spec}}


def test_url_from_operator_domain_or_explicit_host_and_path():
    assert resolve(body(), CFG).url == "https://acme.scim.example.com/scim/v2"
    t = resolve(body(ingress={"host": "sso.acme.com", "path": "/acme/scim/v2"}), CFG)
    assert t.url == "https://sso.acme.com/acme/scim/v2"
    assert resolve(body(), OperatorConfig()).url is None  # no host, no domain
    http = OperatorConfig(domain="test.local", url_scheme="http")
    assert resolve(body(), http).url == "http://acme.test.local/scim/v2"
    # TLS at the Ingress always means https, whatever the operator's scheme
    tls_here = resolve(body(ingress={"tls": {"secretName": "wild"}}), http)
    assert tls_here.url == "https://acme.test.local/scim/v2"


def test_disabled_ingress_still_has_a_url_but_is_not_managed():
    t = resolve(body(ingress={"enabled": False}), CFG)
    assert t.url == "https://acme.scim.example.com/scim/v2" and not t.ingress.managed
    assert not resolve(body(), OperatorConfig()).ingress.managed  # no host for the rule


def test_tls_sources_in_order_of_precedence():
    cfg = OperatorConfig(domain="d.example", tls_issuer={"name": "default", "kind": "ClusterIssuer",
                                                         "group": "cert-manager.io"})
    own = resolve(body(ingress={"tls": {"secretName": "wild"}}), cfg).ingress
    assert own.tls.secret_name == "wild" and own.tls.issuer is None
    spec_issuer = resolve(body(ingress={"tls": {"issuerRef": {"name": "le"}}}), cfg).ingress
    assert spec_issuer.tls.issuer == Issuer("le", "ClusterIssuer", "cert-manager.io")
    assert spec_issuer.tls.secret_name == "acme-tls"
    default = resolve(body(), cfg).ingress.tls
    assert default.issuer.name == "default"
    assert resolve(body(ingress={"tls": {"enabled": False}}), cfg).ingress.tls is None
    assert resolve(body(), OperatorConfig(domain="d.example")).ingress.tls is None


@pytest.mark.parametrize("issuer,annotations", [
    (Issuer("le", "ClusterIssuer", "cert-manager.io"), {"cert-manager.io/cluster-issuer": "le"}),
    (Issuer("ns", "Issuer", "cert-manager.io"), {"cert-manager.io/issuer": "ns"}),
    (Issuer("step", "StepIssuer", "certmanager.step.sm"), {
        "cert-manager.io/issuer": "step", "cert-manager.io/issuer-kind": "StepIssuer",
        "cert-manager.io/issuer-group": "certmanager.step.sm"}),
])
def test_issuer_annotations_for_cert_managers_ingress_shim(issuer, annotations):
    assert issuer.annotations() == annotations


def test_ingress_annotations_merge_operator_then_tenant_then_issuer():
    cfg = OperatorConfig(domain="d.example", ingress_annotations={"a": "op", "b": "op"})
    t = resolve(body(ingress={"annotations": {"b": "tenant"},
                              "tls": {"issuerRef": {"name": "le"}}}), cfg)
    assert t.ingress.annotations == {"a": "op", "b": "tenant",
                                     "cert-manager.io/cluster-issuer": "le"}


def test_standard_labels_win_over_the_tenants_ingress_labels():
    t = resolve(body(ingress={"labels": {"team": "x", "app.kubernetes.io/instance": "evil"}}),
                CFG)
    assert t.ingress.labels == {**t.labels, "team": "x"}
    assert t.labels["app.kubernetes.io/instance"] == "acme"


def test_spec_values_over_operator_defaults():
    t = resolve(body(server={"image": "mine:2", "logLevel": "debug"},
                     ingress={"className": "traefik"},
                     networkPolicy={"ingressNamespace": "traefik"}), CFG)
    assert (t.server.image, t.server.log_level) == ("mine:2", "debug")
    assert t.ingress.class_name == "traefik"
    assert t.admitted_namespaces == ("traefik",)
    d = resolve(body(), CFG)
    assert (d.server.image, d.server.log_level) == ("registry.example/joyn-scim:1.2.3", "info")
    assert d.server.resources == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"memory": "256Mi"}}
    assert d.ingress.class_name == "nginx" and d.ingress.path == "/scim/v2"
    assert d.admitted_namespaces == ("ingress-nginx",)


def test_monitoring_namespace_is_admitted_once_and_no_policy_admits_nothing():
    cfg = OperatorConfig(ingress_namespace="ingress", monitoring_namespace="monitoring")
    assert resolve(body(), cfg).admitted_namespaces == ("ingress", "monitoring")
    same = OperatorConfig(ingress_namespace="shared", monitoring_namespace="shared")
    assert resolve(body(), same).admitted_namespaces == ("shared",)
    assert resolve(body(networkPolicy={"enabled": False}), cfg).admitted_namespaces == ()


@pytest.mark.parametrize("policy,retained", [("Retain", True), ("Delete", False), (None, True)])
def test_deletion_policy(policy, retained):
    spec = {"storage": {"deletionPolicy": policy}} if policy else {}
    assert resolve(body(**spec), CFG).storage.retained is retained


def test_own_token_and_bring_your_own():
    own = resolve(body(), CFG)
    assert (own.token.secret_name, own.token.key, own.token.own) == (
        "acme-scim-token", "token", True)
    assert own.rotation.overlap == timedelta(hours=72)
    byo = resolve(body(token={"existingSecretRef": {"name": "vault"},
                              "previousTokenValidFor": "1h30m"}), CFG)
    assert (byo.token.secret_name, byo.token.key, byo.token.own) == ("vault", "token", False)
    assert byo.rotation.overlap == timedelta(hours=1, minutes=30)


def test_annotations_a_person_sets():
    t = resolve(body(annotations={"scim.sevenlakes.com/paused": "true",
                                  "scim.sevenlakes.com/rotate-token": "r1"}), CFG)
    assert t.paused and t.rotation.request == "r1" and t.rotation.invalid is None


@pytest.mark.parametrize("overlap, expected", [("24h", timedelta(hours=24)),
                                               (" 90m ", timedelta(minutes=90))])
def test_a_rotation_may_ask_for_its_own_overlap(overlap, expected):
    t = resolve(body(annotations={"scim.sevenlakes.com/rotate-token": "r1",
                                  "scim.sevenlakes.com/rotate-token-overlap": overlap}), CFG)
    assert t.rotation.overlap == expected and t.rotation.invalid is None


def test_an_overlap_that_is_no_duration_refuses_the_rotation_and_says_why():
    t = resolve(body(annotations={"scim.sevenlakes.com/rotate-token": "r1",
                                  "scim.sevenlakes.com/rotate-token-overlap": "3 days"}), CFG)
    assert t.rotation.overlap == timedelta(hours=72)
    assert "'3 days' is not a duration" in t.rotation.invalid
    assert not resolve(body(annotations={"scim.sevenlakes.com/paused": "yes"}), CFG).paused


def test_names_and_selector():
    t = resolve(body(), CFG)
    assert (t.names.deployment, t.names.pvc, t.names.secret, t.names.tls) == (
        "acme-scim", "acme-scim-data", "acme-scim-token", "acme-tls")
    assert t.pod_selector == "app.kubernetes.io/name=joyn-scim,app.kubernetes.io/instance=acme"
    assert t.owner["uid"] == "uid-1" and t.generation == 3


# -- spec.events ---------------------------------------------------------------------------------

def test_no_event_stream_unless_enabled():
    assert resolve(body(), CFG).events is None
    off = body(events={"enabled": False, "push": {"url": "https://fsm.example"},
                       "receivers": [{"podSelector": {}}]})
    assert resolve(off, CFG).events is None


def test_an_enabled_stream_has_the_servers_defaults_and_two_secrets_of_its_own():
    e = resolve(body(events={"enabled": True}), CFG).events
    assert (e.audience, e.retention, e.retention_count) == ("joyn-fsm", "336h", 1_000_000)
    assert e.push is None and e.receivers == ()
    assert (e.token_secret, e.signing_key_secret) == ("acme-scim-events-token",
                                                      "acme-scim-events-signing-key")
    assert e.token_rotation.overlap == timedelta(hours=72)
    assert e.key_rotation.overlap == timedelta(hours=24)
    assert resolve(body(events={"enabled": True}), CFG).names.events_token == e.token_secret


def test_push_receivers_and_retention_from_the_spec():
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fsm"}},
              "podSelector": {"matchLabels": {"app": "fsm"}}},
             {"podSelector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]}}]
    e = resolve(body(events={
        "enabled": True, "audience": "fsm-prod", "retention": {"maxAge": "48h", "maxEvents": 10},
        "push": {"url": "https://fsm.example/in", "authorizationSecretRef": {"name": "auth"}},
        "receivers": peers}), CFG).events
    assert (e.audience, e.retention, e.retention_count) == ("fsm-prod", "48h", 10)
    assert e.push.url == "https://fsm.example/in"
    assert e.push.authorization == ("auth", "authorization")  # the key's default
    assert list(e.receivers) == peers
    bare = resolve(body(events={"enabled": True, "push": {"url": "http://fsm"}}), CFG).events
    assert bare.push.authorization is None


def test_the_push_authorization_secret_is_a_reference_the_operator_watches():
    t = resolve(body(events={"enabled": True, "push": {
        "url": "https://fsm.example", "authorizationSecretRef": {"name": "auth", "key": "h"}}}),
        CFG)
    assert ("Secret", "customers", "auth") in references(t)
    assert all(kind != "Secret" for kind, _, _ in references(resolve(body(), CFG)))


def test_each_credential_rotates_by_its_own_annotations():
    t = resolve(body(events={"enabled": True}, annotations={
        "scim.sevenlakes.com/rotate-events-token": "e1",
        "scim.sevenlakes.com/rotate-events-token-overlap": "2h",
        "scim.sevenlakes.com/rotate-events-signing-key": "k1",
        "scim.sevenlakes.com/rotate-events-signing-key-overlap": "soon"}), CFG)
    assert t.rotation.request is None  # Entra's token is not asked to rotate
    assert (t.events.token_rotation.request, t.events.token_rotation.overlap) == (
        "e1", timedelta(hours=2))
    key = t.events.key_rotation
    assert key.request == "k1" and key.overlap == timedelta(hours=24)
    assert "rotate-events-signing-key-overlap='soon' is not a duration" in key.invalid
    assert "the event signing key was not rotated" in key.invalid


PLATFORM = OperatorConfig(server_image="r/joyn-scim:1", tenant_defaults={
    "server.resources": {"requests": {"cpu": "100m"}}, "server.nodeSelector": {"pool": "scim"},
    "server.tolerations": [{"key": "scim", "operator": "Exists"}],
    "server.affinity": {"nodeAffinity": {}},
    "server.topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                                          "whenUnsatisfiable": "ScheduleAnyway"}],
    "server.priorityClassName": "tenants", "server.podLabels": {"team": "platform", "a": "op"},
    "server.podAnnotations": {"scrape": "yes", "a": "op"},
    "server.imagePullSecrets": [{"name": "platform-registry"}],
    "storage.size": "2Gi", "storage.storageClassName": "gp3"})


def test_the_operators_defaults_apply_where_the_tenant_sets_nothing():
    s = resolve(body(), PLATFORM)
    assert (s.server.resources, s.server.node_selector, s.server.tolerations,
            s.server.affinity, s.server.priority_class, s.server.image_pull_secrets) == (
        {"requests": {"cpu": "100m"}}, {"pool": "scim"}, [{"key": "scim", "operator": "Exists"}],
        {"nodeAffinity": {}}, "tenants", [{"name": "platform-registry"}])
    assert s.server.topology_spread[0]["topologyKey"] == "zone"
    assert s.server.pod_annotations == {"scrape": "yes", "a": "op"}
    assert (s.storage.size, s.storage.class_name) == ("2Gi", "gp3")
    assert s.storage.defaulted == ("size", "class_name")


def test_the_tenants_own_values_win_and_an_empty_one_opts_out():
    t = resolve(body(server={"resources": {"limits": {"memory": "1Gi"}},
                             "nodeSelector": {"pool": "big"}, "tolerations": [],
                             "priorityClassName": "vip", "imagePullSecrets": [],
                             "podAnnotations": {"a": "tenant"}},
                     storage={"size": "10Gi", "storageClassName": "premium"}), PLATFORM)
    assert (t.server.resources, t.server.node_selector, t.server.tolerations,
            t.server.priority_class, t.server.image_pull_secrets) == (
        {"limits": {"memory": "1Gi"}}, {"pool": "big"}, [], "vip", [])
    # Annotations and labels merge key by key, the tenant's over the operator's.
    assert t.server.pod_annotations == {"scrape": "yes", "a": "tenant"}
    assert (t.storage.size, t.storage.class_name, t.storage.defaulted) == ("10Gi", "premium", ())


def test_built_in_defaults_without_the_operators():
    t = resolve(body(), OperatorConfig())
    assert t.server.resources == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                  "limits": {"memory": "256Mi"}}
    assert (t.storage.size, t.storage.class_name, t.server.image_pull_secrets,
            t.server.pod_annotations, t.server.priority_class) == ("1Gi", None, None, None, None)


def test_pod_labels_never_replace_the_labels_that_select_the_pod():
    t = resolve(body(server={"podLabels": {"app.kubernetes.io/instance": "other",
                                           "app.kubernetes.io/name": "x", "tier": "gold"}}),
                PLATFORM)
    assert t.server.pod_labels == {**t.labels, "team": "platform", "a": "op", "tier": "gold"}
    assert {k: t.server.pod_labels[k] for k in t.selector} == t.selector


def test_an_existing_volume_keeps_its_size_and_class_when_the_defaults_change():
    claim = {"spec": {"storageClassName": "standard",
                      "resources": {"requests": {"storage": "1Gi"}}}}
    kept = with_claim(resolve(body(), PLATFORM), claim).storage
    assert (kept.size, kept.class_name) == ("1Gi", "standard")
    # The tenant's own values are applied to the claim: growing it is the tenant's request.
    own = with_claim(resolve(body(storage={"size": "5Gi"}), PLATFORM), claim).storage
    assert (own.size, own.class_name) == ("5Gi", "standard")
    assert with_claim(resolve(body(), PLATFORM), None).storage.size == "2Gi"  # a new volume


def test_the_server_image_follows_the_operator_unless_the_tenant_names_one():
    t = resolve(body(annotations={"scim.sevenlakes.com/update-server-image": "true"}), PLATFORM)
    assert (t.server.image, t.server.spec_image, t.server.default_image,
            t.server.update_requested) == ("r/joyn-scim:1", None, "r/joyn-scim:1", True)
    own = resolve(body(server={"image": "mine:2"}), PLATFORM)
    assert (own.server.image, own.server.spec_image, own.server.update_requested) == (
        "mine:2", "mine:2", False)
