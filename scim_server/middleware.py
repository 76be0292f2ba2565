"""ASGI middleware run on every request: path normalising, request ids, the access log and
metrics, a SCIM 500 body when a handler fails, and bearer-token checks under the base path.

Written as plain ASGI callables (not Starlette's BaseHTTPMiddleware, which adds a task and a
stream copy per request) because it runs on every request.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time

from .auth import TokenStore
from .errors import ScimError, internal_error
from .metrics import Metrics
from .responses import error_response

log = logging.getLogger("scim_server.access")

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}\Z")
# Our request ids: a random prefix per process and a counter, unique across pods without
# reading the OS's random source per request (uuid4 did, 1.4% of the Entra mix's CPU).
_ID_PREFIX = secrets.token_hex(6)
_ID_COUNTER = itertools.count(1)
_RESOURCES = frozenset({"Users", "Groups", "Schemas", "ResourceTypes", "ServiceProviderConfig",
                        ".search"})
_QUIET = frozenset({"/healthz", "/readyz", "/metrics"})
_EVENTS = "/events"  # the event stream's endpoints: the receiver's credential, not Entra's


_CANONICAL_SEGMENTS = {r.lower(): r for r in _RESOURCES}
_SLASHES = re.compile(r"//+")


def normalize_path(path: str, base_path: str) -> str:
    """`/scim/v2//users/` -> `/scim/v2/Users`: a Tenant URL typed with a trailing slash, and
    clients that lower-case endpoint names (Microsoft's own test collection does), still
    reach the right endpoint instead of a 404."""
    path = _SLASHES.sub("/", path)
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    if path.startswith(base_path + "/"):
        head, sep, rest = path[len(base_path) + 1:].partition("/")
        canonical = _CANONICAL_SEGMENTS.get(head.lower())
        if canonical and canonical != head:
            path = f"{base_path}/{canonical}{sep}{rest}"
    return path


def resource_label(path: str, base_path: str) -> str:
    """The metrics label of a path: a SCIM endpoint's name, a health endpoint's, or "other"
    (never the path itself, which holds ids)."""
    if path in _QUIET:
        return path.strip("/")
    if path == _EVENTS or path.startswith(_EVENTS + "/"):
        return "events"
    if path.startswith(base_path + "/"):
        head = path[len(base_path) + 1:].split("/", 1)[0]
        return head if head in _RESOURCES else "other"
    return "other"


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
                resp = error_response(internal_error(rid))
                await resp(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - t0
            path = scope["path"]
            resource = resource_label(path, self.base_path)
            method = scope["method"]
            self.metrics.observe(method, resource, status, elapsed)
            if (path not in _QUIET or status >= 400) and log.isEnabledFor(logging.INFO):
                log.info("request", extra={
                    "request_id": rid, "method": method, "path": path, "status": status,
                    "duration_ms": round(elapsed * 1000, 3)})


class BearerAuthMiddleware:
    """Every request under the SCIM base path needs a valid bearer token; others do not, nor
    do the probes and metrics, even under a base path of "/" (a kubelet has no token), nor the
    event stream's endpoints, which check the receiver's credential themselves."""

    def __init__(self, app, tokens: TokenStore, base_path: str) -> None:
        self.app = app
        self.tokens = tokens
        self.base_path = base_path

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"] if scope["type"] == "http" else None
        if path and path not in _QUIET and (path == self.base_path
                                            or path.startswith(self.base_path + "/")) and \
                not (path == _EVENTS or path.startswith(_EVENTS + "/")):
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not self.tokens.check(header):
                detail = "Missing bearer token" if header is None else "Invalid bearer token"
                err = ScimError(401, f"{detail}: send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": 'Bearer realm="SCIM"'})
                await error_response(err)(scope, receive, send)
                return
        await self.app(scope, receive, send)
