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

# The settings a platform team may default for every tenant (the chart's
# operator.tenantDefaults, JOYN_OPERATOR_TENANT_DEFAULTS, shaped like a tenant's spec); a
# tenant's own value wins. None of them may have a CRD default: the API server would write it
# into every stored tenant, which would then look as if the tenant had set it, and the
# operator's default would never apply. Their built-in defaults live in BUILTIN_DEFAULTS.
OPERATOR_DEFAULTS = ("server.resources", "server.nodeSelector", "server.tolerations",
                     "server.affinity", "server.topologySpreadConstraints",
                     "server.priorityClassName", "server.podLabels", "server.podAnnotations",
                     "server.imagePullSecrets", "storage.size", "storage.storageClassName")
BUILTIN_DEFAULTS: dict[str, object] = {"server.resources": SERVER_RESOURCES, "storage.size": "1Gi"}
# server.imagePullSecrets name Secrets in each tenant's namespace: referenced, never copied.
# (Deviating from CloudNativePG, which copies its operator's pull secret into every operand
# namespace.) A copy would need the operator to read Secrets in its own namespace and write a
# registry credential into 200 customer namespaces, where the rep role (get secrets) and every
# namespace admin could read it; a platform team provisions those namespaces anyway (GitOps,
# External Secrets, a namespace template), and the same name in each is all a reference needs.
# A referenced Secret that is missing makes the kubelet pull without it, so the tenant says
# ImagePullBackOff and recovers by itself once the Secret exists (the kubelet retries).


def spec_value(spec: dict, dotted: str):
    """spec's value at `dotted` (e.g. "ingress.tls.enabled"), else its default, else None."""
    node: object = spec
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return SPEC_DEFAULTS.get(dotted)
    return node


def tenant_value(spec: dict, dotted: str, operator_defaults: dict[str, object]
                 ) -> tuple[object, bool]:
    """(value, defaulted) of one of OPERATOR_DEFAULTS: the tenant's own (even an empty list or
    map: a tenant may opt out of a default that way), else the operator's, else the built-in
    one; defaulted is True unless the value is the tenant's."""
    value = spec_value(spec, dotted)
    if value is not None:
        return value, False
    value = operator_defaults.get(dotted)
    return (value if value is not None else BUILTIN_DEFAULTS.get(dotted)), True
