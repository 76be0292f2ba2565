"""joyn_operator: the kopf operator that runs one SCIM server per JoynScimTenant.

Lives in the folder `operator/` of the repository; it is never importable as `operator`
(Python's stdlib owns that name)."""

GROUP = "scim.sevenlakes.com"
VERSION = "v1alpha1"
PLURAL = "joynscimtenants"
KIND = "JoynScimTenant"
