"""SCIM schema definitions (RFC 7643 §8.7) and the discovery documents built from them.

The attribute tree defined here drives everything else: input validation, filter and PATCH path
resolution, projection and `/Schemas`. Names are matched case-insensitively (RFC 7643 §2.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
JOYN_USER = "urn:ietf:params:scim:schemas:extension:joynfsm:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SERVICE_PROVIDER_CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str = "string"
    description: str = ""
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"
    returned: str = "default"
    uniqueness: str = "none"
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    sub_attributes: tuple[Attribute, ...] = ()
    # A custom attribute an Entra admin may have declared Integer: a JSON number is accepted.
    accepts_numbers: bool = False
    by_name: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({a.name.lower(): a for a in self.sub_attributes})

    def sub(self, name: str) -> Attribute | None:
        return self.by_name.get(name.lower())

    def to_scim(self) -> dict:
        out: dict = {
            "name": self.name,
            "type": self.type,
            "multiValued": self.multi_valued,
            "description": self.description,
            "required": self.required,
        }
        if self.type in ("string", "reference", "binary"):
            out["caseExact"] = self.case_exact
        if self.canonical_values:
            out["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        out["mutability"] = self.mutability
        out["returned"] = self.returned
        if self.type != "complex":
            out["uniqueness"] = self.uniqueness
        if self.sub_attributes:
            out["subAttributes"] = [a.to_scim() for a in self.sub_attributes]
        return out


@dataclass(frozen=True)
class Schema:
    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...]
    by_name: dict[str, Attribute] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name.update({a.name.lower(): a for a in self.attributes})

    def attr(self, name: str) -> Attribute | None:
        return self.by_name.get(name.lower())

    def to_scim(self, base_url: str) -> dict:
        return {
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


def _s(name: str, description: str, **kw) -> Attribute:
    return Attribute(name=name, type="string", description=description, **kw)


def _bool(name: str, description: str, **kw) -> Attribute:
    return Attribute(name=name, type="boolean", description=description, **kw)


def _ref(name: str, description: str, types: tuple[str, ...], **kw) -> Attribute:
    return Attribute(name=name, type="reference", description=description, case_exact=True,
                     reference_types=types, **kw)


def _complex(name: str, description: str, subs: tuple[Attribute, ...], **kw) -> Attribute:
    return Attribute(name=name, type="complex", description=description, sub_attributes=subs, **kw)


def _multi(name: str, description: str, value: Attribute, types: tuple[str, ...]) -> Attribute:
    """The common shape of `emails`, `phoneNumbers`, `ims`, ...: value, display, type, primary."""
    return _complex(name, description, (
        value,
        _s("display", "A human-readable name, primarily used for display purposes."),
        _s("type", f"A label indicating the attribute's function, e.g. '{types[0]}'." if types
           else "A label indicating the attribute's function.", canonical_values=types),
        _bool("primary", "A Boolean value indicating the 'primary' or preferred attribute value."),
    ), multi_valued=True)


_PHONE_TYPES = ("work", "home", "mobile", "fax", "pager", "other")

USER_SCHEMA = Schema(USER, "User", "User Account", (
    _s("userName", "Unique identifier for the User, typically used by the user to directly "
       "authenticate to the service provider. Unique across the service provider's Users, "
       "compared case-insensitively.", required=True, uniqueness="server"),
    _complex("name", "The components of the user's real name.", (
        _s("formatted", "The full name, including all middle names, titles, and suffixes as "
           "appropriate, formatted for display."),
        _s("familyName", "The family name of the User, or last name."),
        _s("givenName", "The given name of the User, or first name."),
        _s("middleName", "The middle name(s) of the User."),
        _s("honorificPrefix", "The honorific prefix(es) of the User, or title."),
        _s("honorificSuffix", "The honorific suffix(es) of the User, or suffix."),
    )),
    _s("displayName", "The name of the User, suitable for display to end-users."),
    _s("nickName", "The casual way to address the user in real life."),
    _ref("profileUrl", "A fully qualified URL pointing to a page representing the User's "
         "online profile.", ("external",)),
    _s("title", "The user's title, such as 'Vice President'."),
    _s("userType", "Used to identify the relationship between the organization and the user."),
    _s("preferredLanguage", "Indicates the User's preferred written or spoken language."),
    _s("locale", "Used to indicate the User's default location for localizing items."),
    _s("timezone", "The User's time zone in the 'Olson' time zone database format."),
    _bool("active", "A Boolean value indicating the User's administrative status."),
    _s("password", "The User's cleartext password. Accepted and discarded: this service never "
       "stores passwords.", case_exact=True, mutability="writeOnly", returned="never"),
    _multi("emails", "Email addresses for the user.",
           _s("value", "Email address for the user."), ("work", "home", "other")),
    _multi("phoneNumbers", "Phone numbers for the User.",
           _s("value", "Phone number of the User."), _PHONE_TYPES),
    _multi("ims", "Instant messaging addresses for the User.",
           _s("value", "Instant messaging address for the User."),
           ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
    _multi("photos", "URLs of photos of the User.",
           _ref("value", "URL of a photo of the User.", ("external",)), ("photo", "thumbnail")),
    _complex("addresses", "A physical mailing address for this User.", (
        _s("formatted", "The full mailing address, formatted for display."),
        _s("streetAddress", "The full street address component."),
        _s("locality", "The city or locality component."),
        _s("region", "The state or region component."),
        _s("postalCode", "The zip code or postal code component."),
        _s("country", "The country name component."),
        _s("type", "A label indicating the address' function, e.g. 'work' or 'home'.",
           canonical_values=("work", "home", "other")),
        _bool("primary", "A Boolean value indicating the 'primary' or preferred address."),
    ), multi_valued=True),
    _complex("groups", "A list of groups to which the user belongs, either through direct "
             "membership or through nested groups.", (
        _s("value", "The identifier of the User's group.", case_exact=True, mutability="readOnly"),
        _ref("$ref", "The URI of the corresponding 'Group' resource.", ("Group",),
             mutability="readOnly"),
        _s("display", "A human-readable name, primarily used for display purposes.",
           mutability="readOnly"),
        _s("type", "A label indicating the attribute's function, e.g. 'direct' or 'indirect'.",
           canonical_values=("direct", "indirect"), mutability="readOnly"),
    ), multi_valued=True, mutability="readOnly"),
    _multi("entitlements", "A list of entitlements for the User.",
           _s("value", "The value of an entitlement."), ()),
    _multi("roles", "A list of roles for the User.", _s("value", "The value of a role."), ()),
    _multi("x509Certificates", "A list of certificates issued to the User.",
           Attribute("value", "binary", "The value of an X.509 certificate.", case_exact=True), ()),
))

GROUP_SCHEMA = Schema(GROUP, "Group", "Group", (
    _s("displayName", "A human-readable name for the Group. Unique across the service "
       "provider's Groups, compared case-insensitively.", required=True, uniqueness="server"),
    _complex("members", "A list of members of the Group.", (
        _s("value", "Identifier of the member of this Group.", case_exact=True,
           mutability="immutable"),
        _ref("$ref", "The URI corresponding to a SCIM resource that is a member of this Group.",
             ("User", "Group"), mutability="immutable"),
        _s("type", "A label indicating the type of resource, e.g. 'User' or 'Group'.",
           canonical_values=("User", "Group"), mutability="immutable"),
        _s("display", "A human-readable name, primarily used for display purposes."),
    ), multi_valued=True),
))

ENTERPRISE_SCHEMA = Schema(ENTERPRISE_USER, "EnterpriseUser", "Enterprise User", (
    _s("employeeNumber", "Numeric or alphanumeric identifier assigned to a person."),
    _s("costCenter", "Identifies the name of a cost center."),
    _s("organization", "Identifies the name of an organization."),
    _s("division", "Identifies the name of a division."),
    _s("department", "Identifies the name of a department."),
    _complex("manager", "The User's manager.", (
        _s("value", "The id of the SCIM resource representing the User's manager.",
           case_exact=True),
        _ref("$ref", "The URI of the SCIM resource representing the User's manager.", ("User",)),
        _s("displayName", "The displayName of the User's manager.", mutability="readOnly"),
    )),
))

JOYN_SCHEMA = Schema(JOYN_USER, "JoynFsmUser", "Joyn FSM user attributes", (
    _s("xid", "The user's external identifier in Joyn FSM.", accepts_numbers=True),
    _s("joynFieldId", "The user's field identifier in Joyn FSM.", accepts_numbers=True),
))

ALL_SCHEMAS: tuple[Schema, ...] = (USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_SCHEMA, JOYN_SCHEMA)
SCHEMAS_BY_ID = {s.id.lower(): s for s in ALL_SCHEMAS}

# Attributes every resource has (RFC 7643 §3.1); they live outside the schema attribute lists.
ID_ATTR = Attribute("id", description="Unique identifier for the resource, assigned by the "
                    "service provider.", case_exact=True, mutability="readOnly",
                    returned="always", uniqueness="server")
EXTERNAL_ID_ATTR = Attribute("externalId", description="Identifier of the resource as defined "
                             "by the provisioning client.", case_exact=True)
META_ATTR = _complex("meta", "Resource metadata.", (
    _s("resourceType", "The name of the resource type of the resource.", case_exact=True,
       mutability="readOnly"),
    Attribute("created", "dateTime", "When the resource was added to the service provider.",
              mutability="readOnly"),
    Attribute("lastModified", "dateTime", "When the resource was last modified.",
              mutability="readOnly"),
    _ref("location", "The URI of the resource being returned.", ("uri",), mutability="readOnly"),
    _s("version", "The version (ETag) of the resource.", case_exact=True, mutability="readOnly"),
), mutability="readOnly")
COMMON_ATTRS = {"id": ID_ATTR, "externalid": EXTERNAL_ID_ATTR, "meta": META_ATTR}


@dataclass(frozen=True)
class ResourceType:
    name: str
    endpoint: str
    description: str
    core: Schema
    extensions: tuple[Schema, ...]

    def schema(self, urn: str) -> Schema | None:
        """The core schema or one of this type's extensions, by URN (case-insensitive)."""
        s = SCHEMAS_BY_ID.get(urn.lower())
        return s if s is self.core or s in self.extensions else None

    def split_urn(self, name: str) -> tuple[Schema, str] | None:
        """Split `urn:...:User:attr.sub` (or the legacy `urn:...:User.attr`) into schema and rest.

        The longest schema URN that prefixes `name` wins, so a URN that is a prefix of another
        never shadows it.
        """
        low = name.lower()
        for s in sorted((self.core, *self.extensions), key=lambda s: -len(s.id)):
            sid = s.id.lower()
            if low == sid:
                return s, ""
            if low.startswith(sid) and low[len(sid)] in ":.":
                return s, name[len(sid) + 1:]
        return None

    def to_scim(self, base_url: str) -> dict:
        out = {
            "schemas": [RESOURCE_TYPE],
            "id": self.name,
            "name": self.name,
            "endpoint": self.endpoint,
            "description": self.description,
            "schema": self.core.id,
            "meta": {"resourceType": "ResourceType",
                     "location": f"{base_url}/ResourceTypes/{self.name}"},
        }
        if self.extensions:
            out["schemaExtensions"] = [{"schema": e.id, "required": False}
                                       for e in self.extensions]
        return out


USER_TYPE = ResourceType("User", "/Users", "User Account", USER_SCHEMA,
                         (ENTERPRISE_SCHEMA, JOYN_SCHEMA))
GROUP_TYPE = ResourceType("Group", "/Groups", "Group", GROUP_SCHEMA, ())
RESOURCE_TYPES = {"User": USER_TYPE, "Group": GROUP_TYPE}


def service_provider_config(base_url: str, max_results: int, max_payload: int,
                            event_uris: tuple[str, ...] = ()) -> dict:
    """The full SPC: every capability is spelled out, unsupported ones with their limits too.
    With the event stream on, `securityEvents` (RFC 9967 §4) lists the events it sends."""
    spc = {
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "documentationUri": "https://github.com/sevenlakes/joyn-scim",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": max_payload},
        "filter": {"supported": True, "maxResults": max_results},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "Authentication with the tenant's secret bearer token "
                           "(Authorization: Bearer <token>).",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "primary": True,
        }],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": f"{base_url}/ServiceProviderConfig"},
    }
    if event_uris:
        spc["securityEvents"] = {"asyncRequest": "none", "eventUris": list(event_uris)}
    return spc
