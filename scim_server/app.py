"""The ASGI application: Starlette routes for RFC 7644, plus health, readiness and metrics.

Middleware is written as plain ASGI callables (not Starlette's BaseHTTPMiddleware, which adds a
task and a stream copy per request) because it runs on every request.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import secrets
import time
from dataclasses import dataclass

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from . import schemas
from .auth import TokenStore
from .errors import ScimError, bad_request, not_found
from .filters import parse_filter
from .limits import MAX_INDEX, MAX_JSON_DEPTH
from .metrics import Metrics
from .patch import apply_patch
from .resources import Projection, canonical_resource, canonical_value, render
from .storage import Query, Storage, Stored

log = logging.getLogger("scim_server.access")
SCIM_JSON = "application/scim+json"


@dataclass(frozen=True)
class AppSettings:
    base_path: str = "/scim/v2"
    public_url: str | None = None  # the Tenant URL, when it differs from what requests show
    max_body_bytes: int = 1024 * 1024
    max_results: int = 1000


def scim_response(body: dict | None, status: int = 200, headers: dict | None = None) -> Response:
    content = b"" if body is None else orjson.dumps(body)
    return Response(content, status, headers, media_type=None if body is None else SCIM_JSON)


def error_response(err: ScimError) -> Response:
    return scim_response(err.body(), err.status, err.headers or None)


class ScimService:
    """The request handlers. `storage` is opened by the lifespan and closed at shutdown."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self.storage: Storage | None = None

    # -- helpers ----------------------------------------------------------------------------

    def base_url(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url
        host = request.headers.get("host") or "localhost"
        # The scope's scheme: request.url would build and parse the whole URL to give it.
        return f"{request.scope['scheme']}://{host}{self.settings.base_path}"

    async def read_json(self, request: Request) -> object:
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
                _depth(doc) > MAX_JSON_DEPTH:
            raise bad_request(f"The request body nests more than {MAX_JSON_DEPTH} levels deep",
                              "invalidSyntax")
        return doc

    @staticmethod
    def list_response(total: int, items: list[dict], start: int) -> Response:
        return scim_response({
            "schemas": [schemas.LIST_RESPONSE],
            "totalResults": total,
            "itemsPerPage": len(items),
            "startIndex": start,
            "Resources": items,
        })

    def query(self, params: dict, projection: Projection) -> Query:
        start, count = self.page(params)
        text = params.get("filter")
        if text is not None and not isinstance(text, str):
            raise bad_request("filter must be a string", "invalidFilter")
        flt = parse_filter(text) if text and text.strip() else None
        order = _str_param(params, "sortOrder") or "ascending"
        if order.lower() not in ("ascending", "descending"):
            raise bad_request("sortOrder must be 'ascending' or 'descending'")
        members = schemas.GROUP_SCHEMA.attr("members")
        groups = schemas.USER_SCHEMA.attr("groups")
        return Query(
            filter=flt,
            sort_by=_str_param(params, "sortBy") or None,
            descending=order.lower() == "descending",
            start_index=start,
            count=count,
            with_members=projection.wants(schemas.GROUP, members),
            with_groups=projection.wants(schemas.USER, groups),
        )

    def page(self, params: dict) -> tuple[int, int]:
        """startIndex and count, clamped as RFC 7644 §3.4.2.4 says: below 1 is 1, a negative
        count is 0, and past the end (even past 2^63) is an empty page."""
        start = min(max(_int_param(params, "startIndex", 1), 1), MAX_INDEX)
        count = min(max(_int_param(params, "count", self.settings.max_results), 0),
                    self.settings.max_results)
        return start, count

    async def search(self, request: Request, rt: schemas.ResourceType,
                     params: dict) -> Response:
        projection = Projection.parse(rt, _csv(params.get("attributes")),
                                      _csv(params.get("excludedAttributes")))
        q = self.query(params, projection)
        total, items = await self.storage.search(rt, q)
        base = self.base_url(request)
        return self.list_response(total, [render(rt, s, base, projection) for s in items],
                                  q.start_index)

    def resource(self, request: Request, rt: schemas.ResourceType, res: Stored,
                 status: int = 200, projection: Projection | None = None) -> Response:
        base = self.base_url(request)
        body = render(rt, res, base, projection or Projection())
        headers = {"ETag": res.etag}
        if status == 201:
            headers["Location"] = f"{base}{rt.endpoint}/{res.id}"
        return scim_response(body, status, headers)

    def projection(self, request: Request, rt: schemas.ResourceType) -> Projection:
        q = request.query_params
        return Projection.parse(rt, q.get("attributes"), q.get("excludedAttributes"))

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

    def handlers(self, rt: schemas.ResourceType) -> list[Route]:
        async def collection(request: Request) -> Response:
            if request.method == "GET":
                return await self.search(request, rt, _query_params(request))
            body = await self.read_json(request)
            doc = canonical_resource(rt, body)
            members = self._members(rt, body)
            doc.pop("members", None)
            return self.resource(request, rt, await self.storage.create(rt, doc, members), 201)

        async def dot_search(request: Request) -> Response:
            return await self.search(request, rt, _search_body(await self.read_json(request)))

        async def item(request: Request) -> Response:
            rid = request.path_params["id"]
            method = request.method
            if_match = request.headers.get("if-match")
            if method in ("GET", "HEAD"):
                projection = self.projection(request, rt)
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
            q = request.query_params
            wants_body = rt is schemas.USER_TYPE or "attributes" in q or \
                "excludedAttributes" in q
            res = await self.storage.modify(rt, rid, lambda d: apply_patch(rt, d, body), if_match,
                                      with_related=wants_body)
            if not wants_body:
                return Response(status_code=204, headers={"ETag": res.etag})
            return self.resource(request, rt, res, projection=self.projection(request, rt))

        ep = rt.endpoint
        return [
            Route(ep, collection, methods=["GET", "POST"]),
            Route(f"{ep}/.search", dot_search, methods=["POST"]),
            Route(ep + "/{id}", item, methods=["GET", "PUT", "PATCH", "DELETE"]),
        ]

    async def root_search(self, request: Request) -> Response:
        """`POST /.search` across Users and Groups: one result list, paged as a whole."""
        params = _search_body(await self.read_json(request))
        start, count = self.page(params)
        base = self.base_url(request)
        total, out, skip = 0, [], start - 1
        for rt in (schemas.USER_TYPE, schemas.GROUP_TYPE):
            projection = Projection.parse(rt, _csv(params.get("attributes")),
                                          _csv(params.get("excludedAttributes")))
            q = self.query(params, projection)
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
        return self.list_response(total, out, start)

    # -- discovery --------------------------------------------------------------------------

    async def schemas_list(self, request: Request) -> Response:
        base = self.base_url(request)
        items = [s.to_scim(base) for s in schemas.ALL_SCHEMAS]
        return self.list_response(len(items), items, 1)

    async def schema_item(self, request: Request) -> Response:
        s = schemas.SCHEMAS_BY_ID.get(request.path_params["id"].lower())
        if s is None:
            raise not_found(f"Schema {request.path_params['id']} not found")
        return scim_response(s.to_scim(self.base_url(request)))

    async def resource_types(self, request: Request) -> Response:
        base = self.base_url(request)
        items = [rt.to_scim(base) for rt in schemas.RESOURCE_TYPES.values()]
        return self.list_response(len(items), items, 1)

    async def resource_type(self, request: Request) -> Response:
        rt = schemas.RESOURCE_TYPES.get(request.path_params["id"])
        if rt is None:
            raise not_found(f"ResourceType {request.path_params['id']} not found")
        return scim_response(rt.to_scim(self.base_url(request)))

    async def spc(self, request: Request) -> Response:
        return scim_response(schemas.service_provider_config(
            self.base_url(request), self.settings.max_results, self.settings.max_body_bytes))


def _depth(doc: object) -> int:
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


def _int_param(params: dict, name: str, default: int) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise bad_request(f"{name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise bad_request(f"{name} must be an integer, not {value!r}") from None


def _str_param(params: dict, name: str) -> str | None:
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


_PARAM_NAMES = {n.lower(): n for n in (
    "filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes")}


def _query_params(request: Request) -> dict:
    """Known query parameters, names matched case-insensitively; unknown ones are ignored."""
    out = {}
    for key, value in request.query_params.multi_items():
        name = _PARAM_NAMES.get(key.lower())
        if name and name not in out:
            out[name] = value
    return out


def _search_body(body: object) -> dict:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object", "invalidSyntax")
    return {_PARAM_NAMES[k.lower()]: v for k, v in body.items() if k.lower() in _PARAM_NAMES}


# --- middleware ---------------------------------------------------------------------------

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}\Z")
# Our request ids: a random prefix per process and a counter, unique across pods without
# reading the OS's random source per request (uuid4 did, 1.4% of the Entra mix's CPU).
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)
_RESOURCES = frozenset({"Users", "Groups", "Schemas", "ResourceTypes", "ServiceProviderConfig",
                        ".search"})
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})


_CANONICAL_SEGMENTS = {r.lower(): r for r in _RESOURCES}
_SLASHES = re.compile(r"//+")


def normalize_path(path: str, base_path: str) -> str:
    """`/scim/v2//users/` -> `/scim/v2/Users`: a Tenant URL typed with a trailing slash, and
    clients that lower-case endpoint names (Microsoft's own test collection does), still
    reach the right endpoint instead of a 404."""
    path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    if base_path and path.startswith(base_path + "/"):
        head, sep, rest = path[len(base_path) + 1:].partition("/")
        canonical = _CANONICAL_SEGMENTS.get(head.lower())
        if canonical and canonical != head:
            path = f"{base_path}/{canonical}{sep}{rest}"
    return path


def _resource_label(path: str, base_path: str) -> str:
    if path.startswith(base_path):
        head = path[len(base_path):].lstrip("/").split("/", 1)[0]
        return head if head in _RESOURCES else "other"
    return path.strip("/") if path in _QUIET else "other"


class ObservabilityMiddleware:
    """Request id, access log line, metrics, and a SCIM 500 body if a handler fails."""

    def __init__(self, app, metrics: Metrics, base_path: str) -> None:
        self.app = app
        self.metrics = metrics
        self.base_path = base_path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = normalize_path(scope["path"], self.base_path)
        if path != scope["path"]:
            scope = {**scope, "path": path, "raw_path": path.encode()}
        rid = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = rid.decode() if rid and _REQUEST_ID.match(rid) else \
            f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = False

        async def send_wrapper(message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()),
                                      (b"x-request-id", rid.encode())]
            await send(message)

        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error", extra={"request_id": rid})
            if not started:
                resp = error_response(ScimError(500, "Internal server error; see the server "
                                                     f"log for request {rid}"))
                await resp(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - t0
            path = scope["path"]
            resource = _resource_label(path, self.base_path)
            method = scope["method"]
            self.metrics.observe(method, resource, status, elapsed)
            if path not in _QUIET or status >= 400:
                log.info("request", extra={
                    "request_id": rid, "method": method, "path": path, "status": status,
                    "duration_ms": round(elapsed * 1000, 3)})


class BearerAuthMiddleware:
    """Every request under the SCIM base path needs a valid bearer token; others do not."""

    def __init__(self, app, tokens: TokenStore, base_path: str) -> None:
        self.app = app
        self.tokens = tokens
        self.base_path = base_path

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and (scope["path"] == self.base_path
                                        or scope["path"].startswith(self.base_path + "/")):
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not self.tokens.check(header):
                detail = "Missing bearer token" if header is None else "Invalid bearer token"
                err = ScimError(401, f"{detail}: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": 'Bearer realm="SCIM"'})
                await error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --- assembly -----------------------------------------------------------------------------

def create_app(settings: AppSettings, storage_factory, tokens: TokenStore,
               metrics: Metrics | None = None) -> object:
    """The whole ASGI app. `storage_factory()` is called once at start-up (lifespan)."""
    metrics = metrics or Metrics()
    svc = ScimService(settings)
    base = settings.base_path

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        problems = []
        try:
            await svc.storage.ping()
        except Exception as e:  # any storage failure means "not ready"; the detail says which
            problems.append(f"database: {type(e).__name__}")
        if tokens.count == 0:
            problems.append("no bearer token configured")
        status = 503 if problems else 200
        return Response(orjson.dumps({"status": "ok" if not problems else "unavailable",
                                      "problems": problems}), status,
                        media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        metrics.tokens.set(tokens.count)
        for rt in schemas.RESOURCE_TYPES.values():
            metrics.resources.labels(rt.name).set(await svc.storage.count(rt))
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    scim_routes = [
        *svc.handlers(schemas.USER_TYPE),
        *svc.handlers(schemas.GROUP_TYPE),
        Route("/.search", svc.root_search, methods=["POST"]),
        Route("/Schemas", svc.schemas_list, methods=["GET"]),
        Route("/Schemas/{id:path}", svc.schema_item, methods=["GET"]),
        Route("/ResourceTypes", svc.resource_types, methods=["GET"]),
        Route("/ResourceTypes/{id}", svc.resource_type, methods=["GET"]),
        Route("/ServiceProviderConfig", svc.spc, methods=["GET"]),
    ]
    routes += [Route(base.rstrip("/") + r.path, r.endpoint, methods=r.methods)
               for r in scim_routes]

    async def scim_error(request: Request, exc: ScimError) -> Response:
        return error_response(exc)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 404:
            detail = f"No such endpoint: {request.url.path}"
        else:
            detail = exc.detail
        return error_response(ScimError(exc.status_code, detail, headers=exc.headers))

    async def server_error(request: Request, exc: Exception) -> Response:
        rid = request.scope.get("state", {}).get("request_id", "")
        return error_response(ScimError(500, "Internal server error; see the server log for "
                                             f"request {rid}"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        svc.storage = storage_factory()
        try:
            yield
        finally:
            await svc.storage.close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ScimError: scim_error, HTTPException: http_error,
                                        Exception: server_error})
    app.state.service = svc
    return ObservabilityMiddleware(BearerAuthMiddleware(app, tokens, base), metrics, base)
