"""SCIM response bodies as Starlette Responses: resources, list responses and errors."""

from __future__ import annotations

import orjson
from starlette.responses import Response

from . import schemas
from .errors import ScimError

SCIM_JSON = "application/scim+json"


def scim_response(body: dict | None, status: int = 200, headers: dict | None = None) -> Response:
    content = b"" if body is None else orjson.dumps(body)
    return Response(content, status, headers, media_type=None if body is None else SCIM_JSON)


def error_response(err: ScimError) -> Response:
    return scim_response(err.body(), err.status, err.headers or None)


def list_response(total: int, items: list[dict], start: int) -> Response:
    return scim_response({
        "schemas": [schemas.LIST_RESPONSE],
        "totalResults": total,
        "itemsPerPage": len(items),
        "startIndex": start,
        "Resources": items,
    })
