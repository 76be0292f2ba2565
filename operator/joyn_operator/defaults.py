"""The JoynScimTenant spec's defaults, in the one Python place that holds them.

The CRD declares the same defaults (the API server fills them in, so `kubectl get -o yaml`
shows them); tests/operator_unit/test_defaults.py proves the two agree. The operator applies
these too, for objects stored before a default existed and for the unit tests, which build
tenants without an API server.
"""

from __future__ import annotations

from scim_server.events import DEFAULT_AUDIENCE, DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT

# Keyed by the field's path under spec.
SPEC_DEFAULTS: dict[str, object] = {
    "ingress.enabled": True,
    "ingress.path": "/scim/v2",
    "ingress.tls.enabled": True,
    "ingress.tls.issuerRef.kind": "ClusterIssuer",
    "ingress.tls.issuerRef.group": "cert-manager.io",
    "token.existingSecretRef.key": "token",
    "token.previousTokenValidFor": "72h",
    "storage.size": "1Gi",
    "storage.deletionPolicy": "Retain",
    "server.logLevel": "info",
    "networkPolicy.enabled": True,
    "events.enabled": False,
    # The server's own defaults (scim_server/events), so a tenant's spec shows what it runs.
    "events.audience": DEFAULT_AUDIENCE,
    "events.retention.maxAge": DEFAULT_RETENTION,
    "events.retention.maxEvents": DEFAULT_RETENTION_COUNT,
    "events.push.authorizationSecretRef.key": "authorization",
    # The application team deploys a new receiver token (days, like Entra's admin); a receiver
    # only needs the previous public key until it has fetched the new JWKS (hours).
    "events.previousTokenValidFor": "72h",
    "events.previousSigningKeyValidFor": "24h",
}

# Not a CRD default, so that a tenant's stored spec does not pin today's figures: the
# server's resources when spec.server.resources is unset (the CRD's description says these).
SERVER_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def spec_value(spec: dict, dotted: str):
    """spec's value at `dotted` (e.g. "ingress.tls.enabled"), else its default, else None."""
    node: object = spec
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return SPEC_DEFAULTS.get(dotted)
    return node
