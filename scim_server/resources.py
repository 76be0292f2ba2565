"""Resource documents: validating what clients send, and rendering what we return.

A stored *document* is the resource as sent, with attribute names in their schema spelling, core
attributes at the top level and each extension's attributes under its URN. It never holds `id`,
`meta`, `schemas`, Group `members` or User `groups`: those are owned by the server and storage.
Values are kept exactly as sent (no reformatting); unknown attributes are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from .errors import ScimError, bad_request
from .filters import to_bool
from .schemas import COMMON_ATTRS, Attribute, ResourceType, Schema
from .storage import Stored


@dataclass(frozen=True)
class Resolved:
    """An attribute path resolved against a resource type."""

    schema: Schema
    attr: Attribute | None  # None: the whole extension (`urn:...:enterprise:2.0:User`)
    sub: Attribute | None
    common: bool = False  # id, externalId, meta: outside the schema's attribute list


def resolve(rt: ResourceType, raw: str, error_type: str) -> Resolved:
    """Resolve `userName`, `name.givenName`, `urn:...:User:department` and the like.

    Unknown names are a 400 of `error_type` (`invalidFilter`, `invalidPath`, ...).
    """
    schema, rest = rt.core, raw
    if raw[:4].lower() == "urn:":
        split = rt.split_urn(raw)
        if split is None:
            raise ScimError(400, f"Unknown schema in attribute {raw!r}", error_type)
        schema, rest = split
        if not rest:
            if schema is rt.core:
                raise ScimError(400, f"Attribute name missing in {raw!r}", error_type)
            return Resolved(schema, None, None)
    name, _, sub_name = rest.partition(".")
    attr = None
    common = False
    if schema is rt.core:
        attr = COMMON_ATTRS.get(name.lower())
        common = attr is not None
    attr = attr or schema.attr(name)
    if attr is None and schema is rt.core:
        # Entra names some extension attributes bare (`"path": "manager"`); a name that only
        # one extension defines can only mean that one.
        found = [(s, a) for s in rt.extensions if (a := s.attr(name)) is not None]
        if len(found) == 1:
            schema, attr = found[0]
    if attr is None:
        raise ScimError(400, f"Unknown attribute {raw!r}", error_type)
    sub = None
    if sub_name:
        sub = attr.sub(sub_name)
        if sub is None:
            raise ScimError(400, f"Unknown attribute {raw!r}", error_type)
    return Resolved(schema, attr, sub, common)


# --- input ------------------------------------------------------------------------------------

def canonical_resource(rt: ResourceType, body: object) -> dict:
    """Validate a POST/PUT body into a stored document (plus `members` for groups)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object", "invalidSyntax")
    doc: dict = {}
    for key, value in body.items():
        low = key.lower()
        if low in ("schemas", "id", "meta") or value is None:
            continue
        if low == "externalid":
            doc["externalId"] = canonical_value(COMMON_ATTRS["externalid"], value, key)
            continue
        if low.startswith("urn:"):
            split = rt.split_urn(key)
            if split is None:
                continue  # an unknown schema (e.g. Microsoft's ADSCIM Group URN): ignored
            schema, rest = split
            if not rest:
                if schema is rt.core:
                    continue
                if not isinstance(value, dict):
                    raise bad_request(f"{key} must be a JSON object")
                ext = canonical_object(schema.attr, value, key)
                if ext:
                    doc.setdefault(schema.id, {}).update(ext)
                continue
            attr = schema.attr(rest)
            container = doc if schema is rt.core else doc.setdefault(schema.id, {})
        else:
            attr = rt.core.attr(key)
            container = doc
        if attr is None or attr.mutability == "readOnly":
            continue
        v = canonical_value(attr, value, key)
        if v is not None and attr.mutability != "writeOnly":
            container[attr.name] = v
    for schema in rt.extensions:
        if schema.id in doc and not doc[schema.id]:
            del doc[schema.id]
    check_required(rt, doc)
    return doc


def check_required(rt: ResourceType, doc: dict) -> None:
    for attr in rt.core.attributes:
        if attr.required and doc.get(attr.name) in (None, ""):
            raise bad_request(f"Attribute '{attr.name}' is required")


def canonical_object(lookup, value: dict, where: str) -> dict:
    out: dict = {}
    for key, v in value.items():
        sub = lookup(key)
        if sub is None or sub.mutability == "readOnly" or v is None:
            continue
        cv = canonical_value(sub, v, f"{where}.{key}")
        if cv is not None and sub.mutability != "writeOnly":
            out[sub.name] = cv
    return out


def canonical_value(attr: Attribute, value: object, where: str) -> object:
    """Check one attribute value against its definition; None means 'unassigned'."""
    if value is None:
        return None
    if attr.multi_valued:
        if not isinstance(value, list):
            raise bad_request(f"Attribute '{where}' is multi-valued and must be a JSON array")
        items = [canonical_single(attr, v, where) for v in value if v is not None]
        items = [v for v in items if v is not None]
        if attr.sub("primary") and sum(1 for v in items if v.get("primary") is True) > 1:
            raise bad_request(f"At most one value of '{where}' may be primary")
        return items or None
    return canonical_single(attr, value, where)


def coerce_complex(attr: Attribute, value: object) -> object:
    """Entra sends enterprise `manager` as "id" or as [{"value": "id"}] (behaviour doc §3.9):
    for a single-valued complex attribute with a `value`, both mean {"value": "id"}."""
    if attr.multi_valued or attr.sub("value") is None:
        return value
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return {"value": value} if isinstance(value, str) else value


def canonical_single(attr: Attribute, value: object, where: str) -> object:
    t = attr.type
    if t == "complex":
        value = coerce_complex(attr, value)
        if not isinstance(value, dict):
            raise bad_request(f"Attribute '{where}' must be a JSON object")
        return canonical_object(attr.sub, value, where) or None
    if t in ("string", "reference", "binary"):
        if attr.accepts_numbers and isinstance(value, (int, float)) and \
                not isinstance(value, bool):
            return value  # kept as sent, so Entra reads back exactly what it wrote
        if not isinstance(value, str):
            raise bad_request(f"Attribute '{where}' must be a string")
        if "\x00" in value:
            # SQLite's JSON functions end a string at U+0000, so no filter could find it.
            raise bad_request(f"Attribute '{where}' must not contain the character U+0000")
        return value
    if t == "boolean":
        b = to_bool(value)
        if not isinstance(b, bool):
            raise bad_request(f"Attribute '{where}' must be a boolean")
        return b
    if t == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"Attribute '{where}' must be an integer")
        return value
    if t == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad_request(f"Attribute '{where}' must be a number")
        return value
    if t == "dateTime":
        if not isinstance(value, str):
            raise bad_request(f"Attribute '{where}' must be a dateTime string")
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise bad_request(f"Attribute '{where}' is not a valid dateTime") from None
        return value
    raise bad_request(f"Attribute '{where}' has an unsupported type")  # pragma: no cover


# --- output -----------------------------------------------------------------------------------

_VALUE_FILTER = re.compile(r"\[[^\]]*\]")


@dataclass(frozen=True)
class Projection:
    """`attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5), resolved once per request."""

    include: frozenset[tuple[str, str | None, str | None]] | None = None
    exclude: frozenset[tuple[str, str | None, str | None]] = frozenset()

    @classmethod
    def parse(cls, rt: ResourceType, attributes: str | None, excluded: str | None) -> Projection:
        def keys(text: str | None) -> frozenset | None:
            if not text:
                return None
            out = set()
            for raw in text.split(","):
                # `emails[type eq "work"]` is not RFC syntax here, but Microsoft's test
                # collection sends it: it selects the attribute, as `emails` does.
                raw = _VALUE_FILTER.sub("", raw).strip()
                if not raw:
                    continue
                try:
                    r = resolve(rt, raw, "invalidValue")
                except ScimError:
                    continue  # an unknown attribute selects nothing
                out.add((r.schema.id if not r.common else "", r.attr.name.lower() if r.attr
                         else None, r.sub.name.lower() if r.sub else None))
            return frozenset(out)

        return cls(keys(attributes), keys(excluded) or frozenset())

    def wants(self, schema_id: str, attr: Attribute) -> bool:
        """Will `attr` (of `schema_id`, "" for id/externalId/meta) appear at all?"""
        if attr.returned == "always":
            return True
        if attr.returned == "never":
            return False
        name = attr.name.lower()
        if self.include is not None:
            return any(s == schema_id and (a is None or a == name) for s, a, _ in self.include)
        return (schema_id, name, None) not in self.exclude and (schema_id, None, None) \
            not in self.exclude

    def shape(self, schema_id: str, attr: Attribute, value: object) -> object:
        """Drop the sub-attributes that are not selected from a complex value."""
        if attr.type != "complex":
            return value
        name = attr.name.lower()
        if self.include is not None:
            if any(s == schema_id and a in (None, name) and sub is None
                   for s, a, sub in self.include):
                return value
            keep = {sub for s, a, sub in self.include if s == schema_id and a == name}
            return _filter_subs(value, lambda k: k.lower() in keep)
        drop = {sub for s, a, sub in self.exclude if s == schema_id and a == name and sub}
        if not drop:
            return value
        return _filter_subs(value, lambda k: k.lower() not in drop)


def _filter_subs(value: object, keep) -> object:
    if isinstance(value, list):
        return [{k: v for k, v in item.items() if keep(k)} for item in value]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if keep(k)}
    return value


DEFAULT_PROJECTION = Projection()


def render(rt: ResourceType, res: Stored, base_url: str,
           projection: Projection = DEFAULT_PROJECTION) -> dict:
    """The SCIM representation of a stored resource, with `meta` and the projection applied."""
    location = f"{base_url}{rt.endpoint}/{res.id}"
    present_ext = [s for s in rt.extensions if s.id in res.doc]
    out: dict = {"schemas": [rt.core.id, *(s.id for s in present_ext)], "id": res.id}
    doc = res.doc
    p = projection
    if "externalId" in doc and p.wants("", COMMON_ATTRS["externalid"]):
        out["externalId"] = doc["externalId"]
    core = rt.core
    for key, value in doc.items():
        attr = core.by_name.get(key.lower())
        if attr is not None and p.wants(core.id, attr):
            out[key] = p.shape(core.id, attr, value)
    if res.members is not None:
        members_attr = core.attr("members")
        if p.wants(core.id, members_attr):
            out["members"] = p.shape(core.id, members_attr, [
                render_member(m, base_url) for m in res.members])
    if res.groups is not None:
        groups_attr = core.attr("groups")
        if res.groups and p.wants(core.id, groups_attr):
            out["groups"] = p.shape(core.id, groups_attr, [
                {"value": g["value"], "$ref": f"{base_url}/Groups/{g['value']}",
                 "display": g["display"], "type": "direct"} for g in res.groups])
    for schema in present_ext:
        ext = {k: p.shape(schema.id, a, v) for k, v in doc[schema.id].items()
               if (a := schema.by_name.get(k.lower())) is not None and p.wants(schema.id, a)}
        if ext:
            out[schema.id] = ext
    if p.wants("", COMMON_ATTRS["meta"]):
        out["meta"] = p.shape("", COMMON_ATTRS["meta"], {
            "resourceType": rt.name,
            "created": res.created,
            "lastModified": res.last_modified,
            "location": location,
            "version": res.etag,
        })
    return out


def render_member(m: dict, base_url: str) -> dict:
    """A member as a resource shows it: value, $ref and type (when known), display."""
    out = {"value": m["value"]}
    if m.get("type"):
        out["$ref"] = f"{base_url}/{m['type']}s/{m['value']}"
        out["type"] = m["type"]
    if m.get("display") is not None:
        out["display"] = m["display"]
    return out
