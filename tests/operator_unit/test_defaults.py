"""The spec's defaults (joyn_operator.defaults) are the CRD's, and nothing else."""

from pathlib import Path

import yaml
from joyn_operator.defaults import OPERATOR_DEFAULTS, SPEC_DEFAULTS, spec_value

from scim_server.events import DEFAULT_AUDIENCE, DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT

CRD = Path(__file__).parents[2] / "crds" / "joynscimtenants.scim.sevenlakes.com.yaml"


def crd_scalar_defaults(schema: dict, prefix: str = "") -> dict:
    out = {}
    for name, prop in (schema.get("properties") or {}).items():
        dotted = f"{prefix}{name}"
        if "default" in prop and not isinstance(prop["default"], dict):
            out[dotted] = prop["default"]
        out.update(crd_scalar_defaults(prop, f"{dotted}."))
    return out


def test_python_defaults_are_exactly_the_crds():
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert crd_scalar_defaults(spec) == SPEC_DEFAULTS


def test_the_event_streams_defaults_are_the_servers():
    """The CRD shows what the server does when the operator sets nothing: its own defaults,
    defined once in scim_server/events."""
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaults = crd_scalar_defaults(spec)
    assert (defaults["events.audience"], defaults["events.retention.maxAge"],
            defaults["events.retention.maxEvents"]) == (
        DEFAULT_AUDIENCE, DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT)
    assert defaults["events.enabled"] is False


def test_spec_value_prefers_the_spec_then_the_default():
    assert spec_value({}, "ingress.path") == "/scim/v2"
    assert spec_value({"ingress": {"path": "/x"}}, "ingress.path") == "/x"
    assert spec_value({"ingress": {"enabled": False}}, "ingress.enabled") is False
    assert spec_value({"ingress": None}, "ingress.tls.enabled") is True
    assert spec_value({}, "ingress.host") is None


def test_what_the_operator_may_default_has_no_crd_default_but_is_a_tenant_field():
    """A CRD default would be stored in every tenant as if it had set it, and the operator's
    default (JOYN_OPERATOR_TENANT_DEFAULTS) would never apply."""
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    for dotted in OPERATOR_DEFAULTS:
        prop = spec
        for part in dotted.split("."):
            prop = prop["properties"][part]
        assert "default" not in prop, dotted
    assert not set(OPERATOR_DEFAULTS) & set(SPEC_DEFAULTS)
