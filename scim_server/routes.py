"""The SCIM endpoints of RFC 7644 (resources, .search, discovery) as Starlette routes, mounted
under the base path by app.py. Handlers read the request, call storage and render; the rules
live in the pure modules they call (params, filters, patch, resources)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import params, schemas
from .errors import ScimError, bad_request, not_found
from .limits import MAX_JSON_DEPTH
from .patch import apply_patch
from .resources import Projection, canonical_resource, canonical_value, render
from .responses import list_response, scim_response
from .storage import Query, Storage, Stored


@dataclass(frozen=True)
class AppSettings:
    base_path: str = "/scim/v2"
    public_url: str | None = None  # the Tenant URL, when it differs from what requests show
    max_body_bytes: int = 1024 * 1024
    max_results: int = 1000
    event_uris: tuple[str, ...] = ()  # the events the stream sends, when it is on (SPC)


class ScimService:
    """The request handlers. `storage` is opened by the app's lifespan and closed at shutdown."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.storage: Storage | None = None

    def routes(self) -> list[Route]:
        """Paths relative to the base path."""
        return [
            *self.resource_routes(schemas.USER_TYPE),
            *self.resource_routes(schemas.GROUP_TYPE),
            Route("/.search", self.root_search, methods=["POST"]),
            Route("/Schemas", self.schemas_list, methods=["GET"]),
            Route("/Schemas/{id:path}", self.schema_item, methods=["GET"]),
            Route("/ResourceTypes", self.resource_types, methods=["GET"]),
            Route("/ResourceTypes/{id}", self.resource_type, methods=["GET"]),
            Route("/ServiceProviderConfig", self.spc, methods=["GET"]),
        ]

    # -- helpers ----------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url
        host = request.headers.get("host") or "localhost"
        # The scope's scheme: request.url would build and parse the whole URL to give it.
        return f"{request.scope['scheme']}://{host}{self.settings.base_path}"

    async def read_json(self, request: Request) -> object:
        encoding = request.headers.get("content-encoding")
        if encoding and encoding.strip().lower() != "identity":
            # No SCIM client compresses its bodies; saying so beats a JSON parse error.
            raise ScimError(415, f"Content-Encoding {encoding!r} is not supported: send the "
                            "body uncompressed")
        cap = self.settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise ScimError(413, f"The request body is larger than {cap} bytes")
        body = bytearray()
        try:
            async for chunk in request.stream():
                body += chunk
                if len(body) > cap:
                    raise ScimError(413, f"The request body is larger than {cap} bytes")
        except ClientDisconnect:  # gone, or closed by the request deadline (connection.py)
            raise ScimError(408, "The connection closed before the request body arrived") \
                from None
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise bad_request(f"The request body is not valid JSON: {e.msg} "
                              f"(position {e.pos})", "invalidSyntax") from None
        # Counting brackets is C-fast; only a body with many is walked.
        if body.count(b"{") + body.count(b"[") > MAX_JSON_DEPTH and \
                json_depth(doc) > MAX_JSON_DEPTH:
            raise bad_request(f"The request body nests more than {MAX_JSON_DEPTH} levels deep",
                              "invalidSyntax")
        return doc

    async def search(self, request: Request, rt: schemas.ResourceType,
                     given: dict) -> Response:
        projection = params.projection(rt, given)
        q = params.query(given, projection, self.settings.max_results)
        total, items = await self.storage.search(rt, q)
        base = self.base_url(request)
        return list_response(total, [render(rt, s, base, projection) for s in items],
                             q.start_index)

    def resource(self, request: Request, rt: schemas.ResourceType, res: Stored,
                 status: int = 200, projection: Projection | None = None) -> Response:
        base = self.base_url(request)
        body = render(rt, res, base, projection or Projection())
        headers = {"ETag": res.etag}
        if status == 201:
            headers["Location"] = f"{base}{rt.endpoint}/{res.id}"
        return scim_response(body, status, headers)

    @staticmethod
    def _members(rt: schemas.ResourceType, body: dict) -> list[dict] | None:
        if rt is not schemas.GROUP_TYPE:
            return None
        raw = next((v for k, v in body.items() if k.lower() == "members"), None)
        members = canonical_value(schemas.GROUP_SCHEMA.attr("members"), raw, "members") or []
        for m in members:
            if not isinstance(m.get("value"), str):
                raise bad_request("Each member needs a string 'value'")
        return members

    # -- resource endpoints -----------------------------------------------------------------

    def resource_routes(self, rt: schemas.ResourceType) -> list[Route]:
        async def collection(request: Request) -> Response:
            if request.method == "GET":
                return await self.search(request, rt, query_params(request))
            body = await self.read_json(request)
            doc = canonical_resource(rt, body)
            members = self._members(rt, body)
            doc.pop("members", None)
            return self.resource(request, rt, await self.storage.create(rt, doc, members), 201)

        async def dot_search(request: Request) -> Response:
            return await self.search(request, rt,
                                     params.from_search_body(await self.read_json(request)))

        async def item(request: Request) -> Response:
            rid = request.path_params["id"]
            method = request.method
            if_match = request.headers.get("if-match")
            if method in ("GET", "HEAD"):
                projection = params.projection(rt, query_params(request))
                related = projection.wants(rt.core.id, rt.core.attr(
                    "members" if rt is schemas.GROUP_TYPE else "groups"))
                res = await self.storage.get(rt, rid, with_related=related)
                inm = request.headers.get("if-none-match")
                if inm and (inm.strip() == "*" or res.etag in [t.strip() for t in inm.split(",")]):
                    return Response(status_code=304, headers={"ETag": res.etag})
                return self.resource(request, rt, res, projection=projection)
            if method == "DELETE":
                await self.storage.delete(rt, rid, if_match)
                return Response(status_code=204)
            body = await self.read_json(request)
            if method == "PUT":
                doc = canonical_resource(rt, body)
                members = self._members(rt, body)
                doc.pop("members", None)
                return self.resource(request, rt,
                                     await self.storage.replace(rt, rid, doc, members,
                                                                if_match))
            # PATCH. Groups answer 204 (Entra never reads members back, and a large group's
            # member list is the expensive part); users answer 200 with the resource.
            given = query_params(request)
            wants_body = rt is schemas.USER_TYPE or "attributes" in given or \
                "excludedAttributes" in given
            res = await self.storage.modify(rt, rid, lambda d: apply_patch(rt, d, body), if_match,
                                            with_related=wants_body, patch_op=body)
            if not wants_body:
                return Response(status_code=204, headers={"ETag": res.etag})
            return self.resource(request, rt, res, projection=params.projection(rt, given))

        ep = rt.endpoint
        return [
            Route(ep, collection, methods=["GET", "POST"]),
            Route(f"{ep}/.search", dot_search, methods=["POST"]),
            Route(ep + "/{id}", item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        ]

    async def root_search(self, request: Request) -> Response:
        """`POST /.search` across Users and Groups: one result list, paged as a whole."""
        given = params.from_search_body(await self.read_json(request))
        start, count = params.page(given, self.settings.max_results)
        base = self.base_url(request)
        total, out, skip = 0, [], start - 1
        for rt in (schemas.USER_TYPE, schemas.GROUP_TYPE):
            projection = params.projection(rt, given)
            q = params.query(given, projection, self.settings.max_results)
            try:
                n, _ = await self.storage.search(rt, Query(q.filter, count=0))
            except ScimError as e:
                if e.scim_type == "invalidFilter" and "Unknown attribute" in e.detail:
                    continue  # the filter names an attribute this type does not have
                raise
            total += n
            if skip >= n or len(out) >= count:
                skip = max(skip - n, 0)
                continue
            page = Query(q.filter, q.sort_by, q.descending, skip + 1, count - len(out),
                         q.with_members, q.with_groups)
            _, items = await self.storage.search(rt, page)
            out += [render(rt, s, base, projection) for s in items]
            skip = 0
        return list_response(total, out, start)

    # -- discovery --------------------------------------------------------------------------

    async def schemas_list(self, request: Request) -> Response:
        base = self.base_url(request)
        items = [s.to_scim(base) for s in schemas.ALL_SCHEMAS]
        return list_response(len(items), items, 1)

    async def schema_item(self, request: Request) -> Response:
        s = schemas.SCHEMAS_BY_ID.get(request.path_params["id"].lower())
        if s is None:
            raise not_found(f"Schema {request.path_params['id']} not found")
        return scim_response(s.to_scim(self.base_url(request)))

    async def resource_types(self, request: Request) -> Response:
        base = self.base_url(request)
        items = [rt.to_scim(base) for rt in schemas.RESOURCE_TYPES.values()]
        return list_response(len(items), items, 1)

    async def resource_type(self, request: Request) -> Response:
        rt = schemas.RESOURCE_TYPES.get(request.path_params["id"])
        if rt is None:
            raise not_found(f"ResourceType {request.path_params['id']} not found")
        return scim_response(rt.to_scim(self.base_url(request)))

    async def spc(self, request: Request) -> Response:
        return scim_response(schemas.service_provider_config(
            self.base_url(request), self.settings.max_results, self.settings.max_body_bytes,
            self.settings.event_uris))


def query_params(request: Request) -> dict:
    return params.from_query(request.query_params.multi_items())


def json_depth(doc: object) -> int:
    """How deep objects and arrays nest in `doc` (iterative: a deep body must not recurse)."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        value, level = todo.pop()
        if isinstance(value, dict):
            value = value.values()
        elif not isinstance(value, list):
            continue
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        todo += [(v, level + 1) for v in value]
    return deepest
