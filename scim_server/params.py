"""Query parameters (RFC 7644 §3.4.2) from a URL's query or a `.search` body, checked and
turned into a storage Query. Pure: no request objects, so each rule is tested directly."""

from __future__ import annotations

from collections.abc import Iterable

from . import schemas
from .errors import bad_request
from .filters import parse_filter
from .limits import MAX_INDEX
from .resources import Projection
from .storage import Query

NAMES = {n.lower(): n for n in (
    "filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes")}


def from_query(items: Iterable[tuple[str, str]]) -> dict:
    """Known parameters of a URL's query, names matched case-insensitively; the first of a
    repeated name wins and unknown names are ignored."""
    out = {}
    for key, value in items:
        name = NAMES.get(key.lower())
        if name and name not in out:
            out[name] = value
    return out


def from_search_body(body: object) -> dict:
    """Known parameters of a `POST .search` body (RFC 7644 §3.4.3)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object", "invalidSyntax")
    return {NAMES[k.lower()]: v for k, v in body.items() if k.lower() in NAMES}


def page(params: dict, max_results: int) -> tuple[int, int]:
    """startIndex and count, clamped as RFC 7644 §3.4.2.4 says: below 1 is 1, a negative
    count is 0, and past the end (even past 2^63) is an empty page."""
    start = min(max(_int(params, "startIndex", 1), 1), MAX_INDEX)
    count = min(max(_int(params, "count", max_results), 0), max_results)
    return start, count


def projection(rt: schemas.ResourceType, params: dict) -> Projection:
    return Projection.parse(rt, _csv(params.get("attributes")),
                            _csv(params.get("excludedAttributes")))


def query(params: dict, projection: Projection, max_results: int) -> Query:
    start, count = page(params, max_results)
    text = params.get("filter")
    if text is not None and not isinstance(text, str):
        raise bad_request("filter must be a string", "invalidFilter")
    flt = parse_filter(text) if text and text.strip() else None
    order = _str(params, "sortOrder") or "ascending"
    if order.lower() not in ("ascending", "descending"):
        raise bad_request("sortOrder must be 'ascending' or 'descending'")
    return Query(
        filter=flt,
        sort_by=_str(params, "sortBy") or None,
        descending=order.lower() == "descending",
        start_index=start,
        count=count,
        with_members=projection.wants(schemas.GROUP, schemas.GROUP_SCHEMA.attr("members")),
        with_groups=projection.wants(schemas.USER, schemas.USER_SCHEMA.attr("groups")),
    )


def _int(params: dict, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise bad_request(f"{name} must be an integer, not {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise bad_request(f"{name} must be an integer, not {value!r}") from None


def _str(params: dict, name: str) -> str | None:
    value = params.get(name)
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    return value


def _csv(value: object) -> str | None:
    """`attributes` as a query parameter ("a,b") or a .search body's array (["a", "b"])."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if value is not None and not isinstance(value, str):
        raise bad_request("attributes and excludedAttributes must be strings")
    return value
