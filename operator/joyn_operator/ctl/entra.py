"""What the customer's Entra admin sets up for Joyn FSM, as data: the handover message renders
it, and tests/operator_unit/test_ctl.py checks docs/entra.md says the same."""

from __future__ import annotations

from scim_server.schemas import ENTERPRISE_USER, JOYN_USER

# (Entra source attribute, Joyn FSM target attribute, note) for "Provision Microsoft Entra ID
# Users"; the first is the matching attribute.
USER_MAPPINGS: tuple[tuple[str, str, str], ...] = (
    ("userPrincipalName", "userName", "matching attribute, precedence 1"),
    ('Switch([IsSoftDeleted], , "False", "True", "True", "False")', "active",
     "disables users instead of deleting them"),
    ("mailNickname (or objectId)", "externalId", ""),
    ("displayName", "displayName", ""),
    ('Join(" ", [givenName], [surname])', "name.formatted", ""),
    ("givenName", "name.givenName", ""),
    ("surname", "name.familyName", ""),
    ("mail", 'emails[type eq "work"].value', ""),
    ("mobile", 'phoneNumbers[type eq "mobile"].value', ""),
    ("department", f"{ENTERPRISE_USER}:department", ""),
    ("(your choice, e.g. employeeId)", f"{JOYN_USER}:xid", "add to the attribute list first"),
    ("(your choice)", f"{JOYN_USER}:joynFieldId", "add to the attribute list first"),
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

# (what the provisioning log shows, cause, fix)
TROUBLESHOOTING: tuple[tuple[str, str, str], ...] = (
    ("Test Connection: 401 / invalid credentials", "a wrong or old Secret Token",
     "paste the current token again (ask your Joyn rep if unsure)"),
    ("Test Connection: 404 / cannot connect", "a wrong Tenant URL",
     "paste the Tenant URL again, exactly"),
    ("EntryConflict / 409", "two Entra users map to one userName, or a group name is taken",
     "fix the duplicate in Entra"),
    ("InvalidAnchor on update", "the user was deleted in Joyn FSM outside Entra",
     "restart provisioning (clear current state) to re-match"),
    ("a field never changes in Joyn FSM", "the attribute is not mapped, or it was emptied in "
     "Entra (Entra sends no empty values)", "map it, or set a value"),
)
