"""The names other tools and people see: label keys and values, annotations, Secret keys.

Defined once here; the chart's alerts, the docs and the tests use the same strings.
"""

from __future__ import annotations

from . import GROUP

# Labels on every child (the tenant's own labels are never copied: GitOps tools would think
# they own the children). SELECTOR_LABELS select a tenant's pods; they never change, since a
# Deployment's selector is immutable.
NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
# On a tenant's objects in another namespace (its database in a CloudNativePG cluster's): the
# tenant's own namespace, which the instance label alone does not name.
TENANT_NAMESPACE_LABEL = "scim.sevenlakes.com/tenant-namespace"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
APP_NAME = "joyn-scim"
SERVER_COMPONENT = "scim-server"
MANAGED_BY = "joyn-scim-operator"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on namespaces

# Annotations a person sets on a tenant.
PAUSED_ANNOTATION = f"{GROUP}/paused"  # "true": leave the children alone
# "true": the server follows the operator's server image at once, whatever the rollout policy.
UPDATE_SERVER_IMAGE_ANNOTATION = f"{GROUP}/update-server-image"
ROTATE_ANNOTATION = f"{GROUP}/rotate-token"  # a new value: rotate the token once
# With a rotation: how long the replaced token stays valid this once (else the spec's value).
ROTATE_OVERLAP_ANNOTATION = f"{GROUP}/rotate-token-overlap"
# A new value: the person has handed the replaced token over (after its Secret was deleted).
REPLACED_ACK_ANNOTATION = f"{GROUP}/acknowledge-token-replaced"
# The event stream's two credentials rotate like the token, each by its own pair.
ROTATE_EVENTS_TOKEN_ANNOTATION = f"{GROUP}/rotate-events-token"
ROTATE_EVENTS_TOKEN_OVERLAP_ANNOTATION = f"{GROUP}/rotate-events-token-overlap"
ROTATE_SIGNING_KEY_ANNOTATION = f"{GROUP}/rotate-events-signing-key"
ROTATE_SIGNING_KEY_OVERLAP_ANNOTATION = f"{GROUP}/rotate-events-signing-key-overlap"

# Annotations the operator keeps on each Secret it generates (the token's, and the event
# stream's two): the credential's lifecycle state.
ISSUED_AT = f"{GROUP}/issued-at"
ROTATED_AT = f"{GROUP}/rotated-at"
PREVIOUS_VALID_UNTIL = f"{GROUP}/previous-valid-until"
ROTATION_ID = f"{GROUP}/rotation-id"  # the rotate-token value last acted on
REPLACED_AT = f"{GROUP}/replaced-at"  # the Secret was deleted and a new token made then
REPLACED_ACK = f"{GROUP}/replaced-ack"  # the acknowledge annotation's value at that moment

# On every child: a digest of what the operator applied (drift is a change made after it).
DESIRED_DIGEST = f"{GROUP}/desired-digest"

# Keys of the generated token Secret.
TOKEN_KEY = "token"  # noqa: S105 - a key name
PREVIOUS_TOKEN_KEY = "previous-token"  # noqa: S105 - a key name
URL_KEY = "url"
# Keys of the event signing-key Secret (the receiver-credential Secret uses the two above):
# the private key that signs (PKCS#8 PEM) and the public keys still published (SPKI PEM).
SIGNING_KEY_KEY = "signing-key.pem"
PREVIOUS_SIGNING_KEYS_KEY = "previous-signing-keys.pem"

# cert-manager's ingress-shim annotations.
CLUSTER_ISSUER_ANNOTATION = "cert-manager.io/cluster-issuer"
ISSUER_ANNOTATION = "cert-manager.io/issuer"
ISSUER_KIND_ANNOTATION = "cert-manager.io/issuer-kind"
ISSUER_GROUP_ANNOTATION = "cert-manager.io/issuer-group"
