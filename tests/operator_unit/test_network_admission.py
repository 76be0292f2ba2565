"""How a tenant's NetworkPolicy admits the ingress controller: by namespace, by pod and
namespace selectors, or by an address block; the tenant's own setting over the operator's; a
bad operator-wide value refused at start-up, naming the variable."""

from __future__ import annotations

import pytest
from joyn_operator.config import ConfigError, OperatorConfig
from joyn_operator.desired import children
from joyn_operator.tenant import resolve

NGINX_PODS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}},
              "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}}
ALB = {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.9.0/24"]}}


def body(**network_policy) -> dict:
    return {"metadata": {"name": "acme", "namespace": "customers", "uid": "u"},
            "spec": {"networkPolicy": network_policy} if network_policy else {}}


def admitted(t) -> list[dict]:
    [policy] = [c for c in children(t) if c["kind"] == "NetworkPolicy"]
    return policy["spec"]["ingress"][0]["from"]


def by_name(namespace: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}


def test_the_operators_namespace_by_default_and_the_tenants_own_namespace_over_it():
    cfg = OperatorConfig(ingress_namespace="ingress-nginx")
    assert admitted(resolve(body(), cfg)) == [by_name("ingress-nginx")]
    assert admitted(resolve(body(ingressNamespace="app-routing-system"), cfg)) == [
        by_name("app-routing-system")]


def test_peers_replace_the_namespace_and_the_most_specific_setting_wins():
    cfg = OperatorConfig(ingress_namespace="ingress-nginx", ingress_from=(ALB,),
                         monitoring_namespace="monitoring")
    # The operator's peers over its namespace; the monitoring namespace stays admitted.
    assert admitted(resolve(body(), cfg)) == [by_name("monitoring"), ALB]
    # A tenant's namespace over the operator's peers, its peers over everything.
    assert admitted(resolve(body(ingressNamespace="traefik"), cfg)) == [
        by_name("traefik"), by_name("monitoring")]
    own = resolve(body(ingressNamespace="traefik", ingressFrom=[NGINX_PODS]), cfg)
    # One peer with both selectors: those pods in that namespace, not either alone.
    assert admitted(own) == [by_name("monitoring"), NGINX_PODS]


def test_peers_alone_still_make_a_policy_and_turning_it_off_makes_none():
    cfg = OperatorConfig(ingress_from=(NGINX_PODS,))
    assert admitted(resolve(body(), cfg)) == [NGINX_PODS]
    t = resolve(body(enabled=False, ingressFrom=[ALB]), cfg)
    assert not t.network_policy and "NetworkPolicy" not in {c["kind"] for c in children(t)}


def test_the_operators_peers_come_from_json_and_a_mistake_stops_it_naming_the_variable():
    env = {"JOYN_OPERATOR_INGRESS_FROM": '[{"ipBlock": {"cidr": "192.168.0.0/24"}}]'}
    assert OperatorConfig.from_env(env).ingress_from == ({"ipBlock": {"cidr": "192.168.0.0/24"}},)
    assert OperatorConfig.from_env({"JOYN_OPERATOR_INGRESS_FROM": "[]"}).ingress_from == ()
    for value, words in (
            ("{", "not JSON"),
            ('{"ipBlock": {}}', "must be a list"),
            ('[{"ipBlock": {"cidr": "10.0.0.0/33"}}]', "'10.0.0.0/33' is not a CIDR"),
            ('[{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]', "cannot be combined"),
            ('[{"namespaceSelecter": {}}]', "nothing else"),
            ('[{"podSelector": {"matchLabels": {"a": 1}}}]', "podSelector: must be a label"),
            ('[{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}]',
             "label selector")):
        with pytest.raises(ConfigError, match="JOYN_OPERATOR_INGRESS_FROM") as e:
            OperatorConfig.from_env({"JOYN_OPERATOR_INGRESS_FROM": value})
        assert words in str(e.value), (value, str(e.value))


def test_the_route_check_settings():
    cfg = OperatorConfig.from_env({"JOYN_OPERATOR_ROUTE_CHECK_ADDRESS": "traefik.edge.svc:443",
                                   "JOYN_OPERATOR_ROUTE_CHECK_SECONDS": "60"})
    assert (cfg.route_check_address, cfg.route_check_seconds) == ("traefik.edge.svc:443", 60)
    assert OperatorConfig.from_env({}).route_check_address is None  # off unless configured
    for env, words in (({"JOYN_OPERATOR_ROUTE_CHECK_ADDRESS": "traefik.edge.svc"},
                        "is not host:port"),
                       ({"JOYN_OPERATOR_ROUTE_CHECK_SECONDS": "0"}, "must be above 0")):
        with pytest.raises(ConfigError, match=words):
            OperatorConfig.from_env(env)
