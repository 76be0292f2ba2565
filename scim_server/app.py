"""The ASGI application: the SCIM routes (routes.py) mounted under the base path, health,
readiness and metrics beside them, SCIM error bodies for every failure, and the middleware
(middleware.py) around it all."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from . import schemas
from .auth import TokenStore
from .errors import ScimError, internal_error
from .events.push import PushSender
from .events.routes import EventRoutes
from .events.stream import EventStream
from .metrics import EventMetrics, Metrics
from .middleware import BearerAuthMiddleware, ObservabilityMiddleware
from .responses import error_response
from .routes import AppSettings, ScimService

__all__ = ["AppSettings", "create_app"]


def create_app(settings: AppSettings, storage_factory, tokens: TokenStore,
               metrics: Metrics | None = None, events: EventStream | None = None) -> object:
    """The whole ASGI app. `storage_factory()` is called once at start-up (lifespan); it must
    record events when `events` (the stream's delivery side) is given."""
    metrics = metrics or Metrics()
    svc = ScimService(settings)
    base = settings.base_path
    event_metrics = EventMetrics(metrics.registry) if events else None
    receivers = TokenStore(list(events.settings.token_files), what="event receiver token") \
        if events else None

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        problems, warnings = [], []
        try:
            await svc.storage.ping()
        except Exception as e:  # any storage failure means "not ready"; the detail says which
            # A backend's ping raises RuntimeError with a reason fit to show (no address, no
            # password); anything else is named by its kind only.
            problems.append(f"database: {e}" if type(e) is RuntimeError
                            else f"database: {type(e).__name__}")
        if tokens.count == 0:
            problems.append("no bearer token configured")
        # The stream's own gaps are said, not made unready: taking the pod out of the Service
        # would stop Entra's provisioning too, and the events wait in the outbox meanwhile.
        if events and events.keys.signer() is None:
            warnings.append("no event signing key loaded")
        if events and receivers.count == 0:
            warnings.append("no event receiver token configured")
        body = {"status": "ok" if not problems else "unavailable", "problems": problems}
        if warnings:
            body["warnings"] = warnings
        return Response(orjson.dumps(body), 503 if problems else 200,
                        media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        metrics.tokens.set(tokens.count)
        metrics.activity()
        for rt in schemas.RESOURCE_TYPES.values():
            metrics.resources.labels(rt.name).set(await svc.storage.count(rt))
        if events:
            event_metrics.observe(await events.state())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    probes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    if events:
        probes += EventRoutes(events, receivers, event_metrics).routes()
    scim = Mount(base, routes=svc.routes())
    # Starlette tries routes in order: the SCIM mount first, as nearly every request is for it,
    # unless it is at the root, where it would take the probes' paths too.
    routes = [scim, *probes] if base else [*probes, scim]

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
        return error_response(internal_error(rid))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        svc.storage = storage_factory()
        await svc.storage.open(wait=False)
        tasks, pusher = [], None
        if events:
            events.storage = svc.storage
            tasks.append(asyncio.ensure_future(events.maintain()))
            if events.push:
                pusher = PushSender(events, event_metrics)
                tasks.append(asyncio.ensure_future(pusher.run()))
        try:
            yield
        finally:
            if events:
                events.close()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if pusher:
                    await pusher.close()
            await svc.storage.close()

    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ScimError: scim_error, HTTPException: http_error,
                                        Exception: server_error})
    app.state.service = svc
    return ObservabilityMiddleware(BearerAuthMiddleware(app, tokens, base), metrics, base)
