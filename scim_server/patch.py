"""The PATCH engine (RFC 7644 §3.5.2): a pure function from (document, PatchOp body) to a new
document plus the membership changes storage must apply.

Group `members` never live in the document: changes to them come out as `MemberChange` deltas so
that adding or removing one member costs O(1) in group size. Everything else is applied to a copy
of the document, which is validated as a whole at the end, so a request applies all of its
operations or none.

Entra's dialect is folded in here rather than in a separate pass because each piece is one branch
of the RFC semantics: capitalised ops, path-less `replace` whose keys are attribute paths, `add` on
a filtered path with no match creating the element, `remove` with a `value` removing only what
matches, and `""`/`null` clearing an attribute.
"""

from __future__ import annotations

import orjson

from .errors import ScimError, bad_request
from .filters import And, Compare, Node, Or, PatchPath, matches, parse_patch_path
from .resources import (
    canonical_resource,
    canonical_single,
    canonical_value,
    coerce_complex,
    resolve,
)
from .schemas import PATCH_OP, Attribute, ResourceType
from .storage import MemberChange

_IGNORED_ON_ELEMENT_EMPTINESS = frozenset({"type", "primary"})


def parse_operations(body: object) -> list[tuple[str, str | None, object]]:
    """The (op, path, value) triples of a PatchOp body; structural problems are 400s."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object", "invalidSyntax")
    schemas = body.get("schemas")
    if schemas is not None and (not isinstance(schemas, list) or PATCH_OP not in schemas):
        raise bad_request(f"schemas must contain {PATCH_OP}", "invalidSyntax")
    ops = next((v for k, v in body.items() if k.lower() == "operations"), None)
    if not isinstance(ops, list):
        raise bad_request("'Operations' must be a JSON array of operations", "invalidSyntax")
    out = []
    for i, raw in enumerate(ops, 1):
        if not isinstance(raw, dict):
            raise bad_request(f"Operation {i} must be a JSON object", "invalidSyntax")
        fields = {k.lower(): v for k, v in raw.items()}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in ("add", "replace", "remove"):
            raise bad_request(f"Operation {i}: 'op' must be add, replace or remove",
                              "invalidSyntax")
        path = fields.get("path")
        if path is not None and not isinstance(path, str):
            raise bad_request(f"Operation {i}: 'path' must be a string", "invalidPath")
        if path is not None and not path.strip():
            path = None
        if op.lower() != "remove" and "value" not in fields:
            raise bad_request(f"Operation {i}: '{op}' needs a 'value'", "invalidValue")
        out.append((op.lower(), path, fields.get("value")))
    return out


def apply_patch(rt: ResourceType, doc: dict, body: object) -> tuple[dict, list[MemberChange]]:
    """Apply a PatchOp body to `doc`; returns the new document and the membership deltas."""
    ops = parse_operations(body)
    new = orjson.loads(orjson.dumps(doc))  # a deep copy: the input stays untouched on failure
    changes: list[MemberChange] = []
    engine = _Engine(rt, new, changes)
    for i, (op, path, value) in enumerate(ops, 1):
        try:
            if path is None:
                engine.pathless(op, value)
            else:
                engine.apply(op, path, value)
        except ScimError as e:
            e.detail = f"Operation {i} ({op} {path or '(no path)'}): {e.detail}"
            raise
    _prune(new)
    return canonical_resource(rt, new), changes


class _Engine:
    def __init__(self, rt: ResourceType, doc: dict, changes: list[MemberChange]) -> None:
        self.rt = rt
        self.doc = doc
        self.changes = changes

    # -- dispatch ---------------------------------------------------------------------------

    def pathless(self, op: str, value: object) -> None:
        if op == "remove":
            raise ScimError(400, "A remove operation needs a path", "noTarget")
        if not isinstance(value, dict):
            raise bad_request("Without a path, the value must be a JSON object of attributes")
        # Keys are attribute names (RFC) or attribute paths (Entra: "name.givenName",
        # "urn:...:enterprise:2.0:User:department"); both are applied as if each were a path.
        for key, v in value.items():
            self.apply(op, key, v, in_value=True)

    def apply(self, op: str, path: str, value: object, in_value: bool = False) -> None:
        """Apply one operation. `in_value`: `path` is a key of a value object, where (as in a
        POST body) `schemas`, `id`, `meta` and unknown attributes are ignored."""
        if in_value and path.lower() in ("schemas", "id", "meta"):
            return
        pp = parse_patch_path(path)
        try:
            r = resolve(self.rt, pp.attr, "invalidPath")
        except ScimError:
            if in_value:
                return
            raise
        if r.attr is None and pp.sub and pp.filter is None:
            # The legacy form `urn:...:enterprise:2.0:User.department` (behaviour doc §3.4).
            self.apply(op, f"{r.schema.id}:{pp.sub}", value, in_value)
            return
        if r.attr is None:  # the whole extension object
            if pp.filter is not None or pp.sub:
                raise ScimError(400, f"Invalid path {path!r}", "invalidPath")
            self.whole_extension(op, r.schema.id, value)
            return
        attr, sub = r.attr, r.sub
        if pp.sub:
            if sub is not None or not attr.sub_attributes:
                raise ScimError(400, f"Invalid path {path!r}", "invalidPath")
            sub = attr.sub(pp.sub)
            if sub is None:
                raise ScimError(400, f"Unknown attribute {path!r}", "invalidPath")
        if pp.filter is not None and not attr.multi_valued:
            if attr.type != "complex":
                raise ScimError(400, f"A value filter needs a complex attribute: {path!r}",
                                "invalidPath")
            # `remove manager[value eq "id"]` (§3.9): acts only if the current value matches.
            container = self.doc if r.schema is self.rt.core else self.doc.get(r.schema.id, {})
            current = container.get(attr.name)
            if not (isinstance(current, dict) and matches(pp.filter, current, attr)):
                if op == "remove":
                    return
                raise ScimError(400, f"No value matches {path!r}", "noTarget")
            pp = PatchPath(pp.attr, None, pp.sub)
        if (r.common and attr.name != "externalId") or attr.mutability == "readOnly":
            raise ScimError(400, f"Attribute '{attr.name}' is read-only", "mutability")
        if self.rt.name == "Group" and attr.name == "members":
            self.members(op, pp, sub, value)
            return
        container = self.doc if r.schema is self.rt.core or r.common else \
            self.doc.setdefault(r.schema.id, {})
        if op == "remove":
            self.remove(container, attr, pp.filter, sub, value)
        elif _is_clear(value):
            self.remove(container, attr, pp.filter, sub, None)
        else:
            self.set(op, container, attr, pp.filter, sub, value)

    def whole_extension(self, op: str, urn: str, value: object) -> None:
        if op == "remove" or _is_clear(value):
            self.doc.pop(urn, None)
            return
        if not isinstance(value, dict):
            raise bad_request(f"The value for {urn} must be a JSON object")
        for key, v in value.items():
            self.apply(op, f"{urn}:{key}", v, in_value=True)

    # -- add / replace ----------------------------------------------------------------------

    def set(self, op: str, container: dict, attr: Attribute, flt: Node | None,
            sub: Attribute | None, value: object) -> None:
        name = attr.name
        if not attr.multi_valued:
            if sub is not None:
                parent = container.get(name)
                if not isinstance(parent, dict):
                    parent = container[name] = {}
                parent[sub.name] = _single(sub, value, f"{name}.{sub.name}")
            elif attr.type == "complex":
                reference = not isinstance(value, dict)  # "id" or [{"value": "id"}]
                value = coerce_complex(attr, value)
                if not isinstance(value, dict):
                    raise bad_request(f"The value for '{name}' must be a JSON object")
                parent = container.get(name)
                if not isinstance(parent, dict) or reference:
                    # A new reference replaces the old one whole: no stale `$ref` is kept.
                    parent = container[name] = {}
                _merge(parent, attr, value, name)
            else:
                container[name] = _single(attr, value, name)
            return

        items: list = container.get(name) or []
        container[name] = items
        if flt is None and sub is None:
            new_items = value if isinstance(value, list) else [value]
            canon = canonical_value(attr, new_items, name) or []
            if op == "replace":
                items[:] = canon
            else:
                for item in canon:
                    if item not in items:
                        items.append(item)
            for item in canon:
                _one_primary(items, item)
            return
        if flt is None:  # `emails.value` without a filter: every element
            targets = items or [_new_element(items, None)]
        else:
            targets = [e for e in items if matches(flt, e, attr)]
            if not targets:
                # Entra sends add/replace on `addresses[type eq "work"].locality` for an address
                # that does not exist yet and expects it created (entra-scim-behaviour §3.3).
                seed = _element_from_filter(flt, attr)
                if seed is None:
                    raise ScimError(400, "No value matches the filter, and it does not name one "
                                    "to create (only 'eq' comparisons joined by 'and' do)",
                                    "noTarget")
                targets = [_new_element(items, seed)]
        for target in targets:
            if not isinstance(target, dict):
                raise ScimError(400, f"'{name}' values have no sub-attributes", "invalidPath")
            if sub is not None:
                target[sub.name] = _single(sub, value, f"{name}.{sub.name}")
            else:
                if not isinstance(value, dict):
                    raise bad_request(f"The value for '{name}[...]' must be a JSON object")
                if op == "replace":
                    keep = {k: v for k, v in target.items() if attr.sub(k) and
                            k.lower() in _filter_names(flt)}
                    target.clear()
                    target.update(keep)
                _merge(target, attr, value, name)
            if target.get("primary") is True:
                _one_primary(items, target)

    # -- remove -----------------------------------------------------------------------------

    def remove(self, container: dict, attr: Attribute, flt: Node | None, sub: Attribute | None,
               value: object) -> None:
        name = attr.name
        current = container.get(name)
        if current is None:
            return
        if not attr.multi_valued:
            if sub is not None:
                if isinstance(current, dict) and _value_matches(current.get(sub.name), value):
                    current.pop(sub.name, None)
            elif _value_matches(current.get("value") if isinstance(current, dict) else current,
                                value):
                del container[name]
            return
        if flt is None and sub is None:
            if value is None:
                del container[name]
            else:  # remove only the listed values (Entra: `remove members` with a value list)
                wanted = value if isinstance(value, list) else [value]
                container[name] = [e for e in current if not any(
                    _same_value(e, w) for w in wanted)]
            return
        targets = current if flt is None else [e for e in current if matches(flt, e, attr)]
        if sub is None:
            container[name] = [e for e in current if not any(e is t for t in targets)]
            return
        for t in targets:
            if isinstance(t, dict) and _value_matches(t.get(sub.name), value):
                t.pop(sub.name, None)
        container[name] = [e for e in current if not (isinstance(e, dict) and _is_empty(e))]

    # -- group members ----------------------------------------------------------------------

    def members(self, op: str, pp: PatchPath, sub: Attribute | None, value: object) -> None:
        attr = self.rt.core.attr("members")
        if pp.filter is None and sub is not None:
            raise ScimError(400, "Address members with a filter, e.g. members[value eq \"id\"]",
                            "invalidPath")
        if pp.filter is not None:
            if op == "remove" and sub is None:
                values = _eq_values(pp.filter, "value")
                self.changes.append(MemberChange("remove", values=values) if values is not None
                                    else MemberChange("remove_where", filter=pp.filter))
                return
            if sub is not None and sub.name == "display":
                display = None if op == "remove" or _is_clear(value) else \
                    canonical_single(sub, value, "members.display")
                self.changes.append(MemberChange("update_where", filter=pp.filter,
                                                 display=display))
                return
            raise ScimError(400, "Only 'display' of a member can change; members are added "
                            "and removed by value", "mutability")
        if op == "remove":
            if value is None:
                self.changes.append(MemberChange("remove_all"))
            else:
                wanted = value if isinstance(value, list) else [value]
                ids = [w.get("value") if isinstance(w, dict) else w for w in wanted]
                if not all(isinstance(i, str) for i in ids):
                    raise bad_request("Each member to remove needs a string 'value'")
                self.changes.append(MemberChange("remove", values=ids))
            return
        if value is None:
            value = []
        items = canonical_value(attr, value if isinstance(value, list) else [value], "members")
        members = items or []
        for m in members:
            if not isinstance(m.get("value"), str):
                raise bad_request("Each member needs a string 'value'")
        self.changes.append(MemberChange("replace" if op == "replace" else "add", members=members))


def _is_clear(value: object) -> bool:
    return value is None or value == ""


def _single(attr: Attribute, value: object, where: str) -> object:
    if attr.multi_valued:
        return canonical_value(attr, value if isinstance(value, list) else [value], where)
    return canonical_single(attr, value, where)


def _merge(target: dict, attr: Attribute, value: dict, where: str) -> None:
    for key, v in value.items():
        sub = attr.sub(key)
        if sub is None or sub.mutability == "readOnly":
            continue
        if _is_clear(v):
            target.pop(sub.name, None)
        else:
            target[sub.name] = _single(sub, v, f"{where}.{sub.name}")


def _new_element(items: list, seed: dict | None) -> dict:
    element = dict(seed or {})
    items.append(element)
    return element


def _element_from_filter(flt: Node, attr: Attribute) -> dict | None:
    """`type eq "work" and primary eq true` -> {"type": "work", "primary": true}."""
    if isinstance(flt, And):
        left, right = _element_from_filter(flt.left, attr), _element_from_filter(flt.right, attr)
        return None if left is None or right is None else {**left, **right}
    if isinstance(flt, Compare) and flt.op == "eq" and flt.value is not None:
        sub = attr.sub(flt.path)
        return {sub.name: flt.value} if sub is not None else None
    return None


def _filter_names(flt: Node | None) -> set[str]:
    if isinstance(flt, (And, Or)):
        return _filter_names(flt.left) | _filter_names(flt.right)
    if isinstance(flt, Compare):
        return {flt.path.lower()}
    return set()


def _eq_values(flt: Node, name: str) -> list[str] | None:
    """`value eq "a" or value eq "b"` -> ["a", "b"]; None for any other shape."""
    if isinstance(flt, Or):
        left, right = _eq_values(flt.left, name), _eq_values(flt.right, name)
        return None if left is None or right is None else left + right
    if isinstance(flt, Compare) and flt.op == "eq" and flt.path.lower() == name \
            and isinstance(flt.value, str):
        return [flt.value]
    return None


def _one_primary(items: list, chosen: object) -> None:
    """RFC 7643 §2.4: at most one primary value; the one just written wins."""
    if isinstance(chosen, dict) and chosen.get("primary") is True:
        for e in items:
            if e is not chosen and isinstance(e, dict) and e.get("primary") is True:
                e["primary"] = False


def _same_value(element: object, wanted: object) -> bool:
    if isinstance(wanted, dict):
        if isinstance(element, dict) and "value" in wanted:
            return _value_matches(element.get("value"), wanted["value"])
        return element == wanted
    return _value_matches(element.get("value") if isinstance(element, dict) else element, wanted)


def _value_matches(current: object, wanted: object) -> bool:
    """`remove` with a value only removes when the value matches (case-insensitively)."""
    if wanted is None:
        return True
    if isinstance(wanted, list) and len(wanted) == 1:
        wanted = wanted[0]
    if isinstance(wanted, dict):
        wanted = wanted.get("value")
    if isinstance(current, str) and isinstance(wanted, str):
        return current.casefold() == wanted.casefold()
    return current == wanted


def _is_empty(element: dict) -> bool:
    return all(k in _IGNORED_ON_ELEMENT_EMPTINESS or v in (None, "", [], {})
               for k, v in element.items())


def _prune(doc: dict) -> None:
    """Drop containers the operations left empty (an empty value means unassigned)."""
    for key in list(doc):
        v = doc[key]
        if isinstance(v, dict):
            for k in [k for k, sv in v.items() if sv in (None, [], {})]:
                del v[k]
        if v in (None, [], {}):
            del doc[key]
