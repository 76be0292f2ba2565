"""When a reconcile skips an apply (joyn_operator.reconcile._current): only when the child
already holds everything the operator sets. A field the API server replaces whole on apply (a
Service's selector, a LabelSelector, a nodeSelector) is compared whole, so a key added by hand
is removed; a key added to an ordinary map (labels) is somebody else's and left alone."""

import copy

from joyn_operator.config import OperatorConfig
from joyn_operator.desired import children
from joyn_operator.reconcile import _current, _stamped
from joyn_operator.tenant import resolve

CFG = OperatorConfig(domain="scim.example.com", ingress_namespace="ingress-nginx")
BODY = {"metadata": {"name": "acme", "namespace": "customers", "uid": "uid-1"},
        "spec": {"displayName": "Acme", "server": {"nodeSelector": {"pool": "scim"}}}}


def desired(kind: str) -> dict:
    return _stamped(next(c for c in children(resolve(BODY, CFG)) if c["kind"] == kind))


def as_served(obj: dict) -> dict:
    """`obj` as the API server returns it: with fields the operator does not set."""
    served = copy.deepcopy(obj)
    served["metadata"]["resourceVersion"] = "7"
    served["spec"]["clusterIP"] = "10.96.0.12"
    return served


def test_an_unchanged_child_is_current():
    service = desired("Service")
    assert _current(as_served(service), service)


def test_a_selector_key_added_by_hand_is_not_current():
    service = desired("Service")
    edited = as_served(service)
    edited["spec"]["selector"]["tier"] = "canary"  # the Service now selects no pod
    assert not _current(edited, service)


def test_a_label_added_by_hand_is_current():
    service = desired("Service")
    edited = as_served(service)
    edited["metadata"]["labels"]["team"] = "platform"
    assert _current(edited, service)


def test_label_selectors_and_node_selectors_are_compared_whole():
    policy = desired("NetworkPolicy")
    edited = as_served(policy)
    edited["spec"]["podSelector"]["matchLabels"]["extra"] = "x"
    assert not _current(edited, policy)
    deployment = desired("Deployment")
    edited = copy.deepcopy(deployment)
    edited["spec"]["template"]["spec"]["nodeSelector"]["zone"] = "b"
    assert not _current(edited, deployment)
