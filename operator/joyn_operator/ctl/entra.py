"""What the customer's Entra admin sets up for Joyn FSM, and what Entra shows when it fails, as
data: the handover message renders it, `test-connection` names the Entra message each failure
gives, and tests/operator_unit/test_ctl_handover.py checks docs/entra.md lists the same
mappings, both ways."""

from __future__ import annotations

from dataclasses import dataclass

from scim_server.schemas import ENTERPRISE_USER, JOYN_USER

_WORK = 'addresses[type eq "work"]'

# (Entra source attribute, Joyn FSM target attribute, note) for "Provision Microsoft Entra ID
# Users", each cell as docs/entra.md's table has it (the source as Markdown: some are prose);
# the first is the matching attribute.
USER_MAPPINGS: tuple[tuple[str, str, str], ...] = (
    ("`userPrincipalName`", "userName", "**matching attribute**, precedence 1"),
    ('`Switch([IsSoftDeleted], , "False", "True", "True", "False")`', "active",
     "disables users instead of deleting them"),
    ("`mailNickname` (or `objectId`)", "externalId", ""),
    ("`displayName`", "displayName", ""),
    ('`Join(" ", [givenName], [surname])`', "name.formatted", ""),
    ("`givenName`", "name.givenName", ""),
    ("`surname`", "name.familyName", ""),
    ("`mail`", 'emails[type eq "work"].value', ""),
    ("`mobile`", 'phoneNumbers[type eq "mobile"].value', "stored exactly as typed in Entra"),
    ("`physicalDeliveryOfficeName`", f"{_WORK}.formatted", ""),
    ("`streetAddress`", f"{_WORK}.streetAddress", ""),
    ("`city`", f"{_WORK}.locality", ""),
    ("`state`", f"{_WORK}.region", ""),
    ("`postalCode`", f"{_WORK}.postalCode", ""),
    ("`country`", f"{_WORK}.country", ""),
    ("`department`", f"{ENTERPRISE_USER}:department", ""),
    ("(your choice, e.g. `employeeId` or an extension attribute)", f"{JOYN_USER}:xid",
     "add to the attribute list first (below)"),
    ("(your choice)", f"{JOYN_USER}:joynFieldId", "add to the attribute list first (below)"),
)

# Added by hand under "Edit attribute list for Joyn FSM" (a non-gallery app reads no schema).
CUSTOM_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    (f"{JOYN_USER}:xid", "String"),
    (f"{JOYN_USER}:joynFieldId", "String"),
)

GROUP_MAPPINGS: tuple[tuple[str, str, str], ...] = (
    ("displayName", "displayName", "matching attribute; names are unique in Joyn FSM"),
    ("objectId", "externalId", ""),
    ("members", "members", ""),
)


@dataclass(frozen=True)
class Symptom:
    """One thing the Entra admin sees (Test Connection's banner and error code, the
    provisioning log's code, the provisioning overview), what causes it with Joyn, what the
    admin does, and what the rep runs to check it. Entra's codes and texts are those of
    Microsoft's provisioning-log and quarantine documentation and of real Test Connection
    failures (shared docs: entra-scim-behaviour.md §2.5)."""

    entra: str
    cause: str
    admin_fix: str
    check: str


CREDENTIALS = "SystemForCrossDomainIdentityManagementCredentialValidationFailure"
SYMPTOMS: dict[str, Symptom] = {
    "unauthorized": Symptom(
        f'Test Connection: "You appear to have entered invalid credentials" ({CREDENTIALS}, '
        "Unauthorized)",
        "a wrong or old Secret Token",
        "paste the current Secret Token again (ask your Joyn rep if unsure), Test Connection, "
        "Save",
        "kubectl joyn test-connection <t> --token-file <the token the admin pasted>; "
        "kubectl joyn tenants (401/1H)"),
    "not_found": Symptom(
        "Test Connection: Response Status Code: NotFound (404)",
        "a wrong Tenant URL (a typo, or another tenant's address)",
        "paste the Tenant URL again, exactly",
        "kubectl joyn credentials <t> (compare the URL); kubectl joyn test-connection <t>"),
    "unreachable": Symptom(
        "Test Connection: the remote name could not be resolved, a timeout, or no trust "
        "relationship for the SSL/TLS secure channel",
        "Joyn's endpoint is not reachable from the internet, or its certificate is not "
        "publicly trusted",
        "nothing to change in Entra: tell your Joyn rep",
        "kubectl joyn test-connection <t> (its DNS and TLS checks)"),
    "server_error": Symptom(
        "Test Connection or the provisioning log: BadGateway, ServiceUnavailable, "
        "GatewayTimeout (5xx) or InternalServerError",
        "the tenant's server is down, or the ingress cannot reach it",
        "nothing to change in Entra (it retries by itself): tell your Joyn rep",
        "kubectl joyn status <t>; kubectl joyn test-connection <t>"),
    "incompatible": Symptom(
        "provisioning log: SystemForCrossDomainIdentityManagementServiceIncompatible (not able "
        "to deserialize the resource)",
        "something other than the Joyn SCIM server answered (a proxy's or load balancer's "
        "page)",
        "nothing to change in Entra: tell your Joyn rep",
        "kubectl joyn test-connection <t> (its Test Connection and Wrong token checks)"),
    "quarantine": Symptom(
        "Provisioning overview: the job is in quarantine (EncounteredQuarantineException)",
        "many failures in a row, most often 401s after the token changed",
        "fix the cause (usually: paste the current Secret Token), Test Connection, Save, then "
        "Restart provisioning",
        "kubectl joyn tenants (401/1H); kubectl joyn status <t>"),
    "conflict": Symptom(
        "provisioning log: EntryConflict (409)",
        "two Entra users map to one userName, or a group name is taken",
        "fix the duplicate in Entra",
        "kubectl joyn report <t> (the server's log names the value)"),
    "invalid_anchor": Symptom(
        "provisioning log: InvalidAnchor on an update",
        "the user was deleted in Joyn FSM outside Entra",
        "Restart provisioning (clear current state) to re-match",
        "kubectl joyn report <t>"),
    "unmapped": Symptom(
        "no error, but a field never changes in Joyn FSM",
        "the attribute is not mapped, or it was emptied in Entra (Entra sends no empty values)",
        "map it, or set a value",
        "kubectl joyn events <t> (when the tenant's event stream is on)"),
}
