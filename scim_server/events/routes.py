"""The stream's HTTP endpoints. They live outside the SCIM base path, like /healthz: the tenant's
Ingress routes only the base path, so the application reaches these through the tenant's
Service (which the tenant's NetworkPolicy opens to the receivers the spec names).

- `POST /events`: RFC 8936 poll (ack, setErrs, maxEvents, returnImmediately, long poll).
- `GET /events/jwks.json`: the public keys the SETs are signed with (no credential: public).
- `GET /events/snapshot`: every user and group at one stream position, for a receiver's start
  or resync (NDJSON: a header line, one resource a line, a signed trailer).
- `GET /events/tail[?after=SEQ&follow=1]`: watch the stream (NDJSON, one SET's claims a line)
  without consuming it.

All but the JWKS need the receiver's credential (`Authorization: Bearer`), which is not Entra's
token: Entra's token opens none of these, and the receiver's opens no SCIM endpoint. Errors
use RFC 8935 §2.3's body, `{"err": ..., "description": ...}`, which RFC 8936 leaves open.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from ..auth import TokenStore
from ..limits import MAX_POLL_EVENTS
from ..resources import render
from ..schemas import GROUP_TYPE, USER_TYPE
from .keys import NoSigningKey
from .stream import EventStream, InvalidJti

EVENTS_PATH = "/events"
_MAX_POLL_BODY = 4 * 1024 * 1024  # an ack of a whole batch of jtis is ~40 KB
_HEARTBEAT = 15.0  # seconds between newlines a quiet `tail --follow` sends
POLL_LINGER = 0.02  # seconds a woken long poll waits for more events to join its answer
NDJSON = "application/x-ndjson"


class EventsError(Exception):
    def __init__(self, status: int, err: str, description: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(description)
        self.status, self.err, self.description = status, err, description
        self.headers = headers


def error_response(e: EventsError) -> Response:
    return Response(orjson.dumps({"err": e.err, "description": e.description}), e.status,
                    e.headers, media_type="application/json")


def _line(value: dict) -> bytes:
    return orjson.dumps(value) + b"\n"


class EventRoutes:
    def __init__(self, stream: EventStream, tokens: TokenStore, metrics) -> None:
        self.stream = stream
        self.tokens = tokens
        self.metrics = metrics

    def routes(self) -> list[Route]:
        return [
            Route(EVENTS_PATH, self.guarded(self.poll), methods=["POST"]),
            Route(f"{EVENTS_PATH}/jwks.json", self.jwks, methods=["GET"]),
            Route(f"{EVENTS_PATH}/snapshot", self.guarded(self.snapshot), methods=["GET"]),
            Route(f"{EVENTS_PATH}/tail", self.guarded(self.tail), methods=["GET"]),
        ]

    def guarded(self, handler):
        """The receiver's credential first; every failure in the RFC's error body."""
        async def endpoint(request: Request) -> Response:
            header = next((v for k, v in request.scope["headers"] if k == b"authorization"),
                          None)
            if not self.tokens.check(header):
                return error_response(EventsError(
                    401, "authentication_failed",
                    ("Missing" if header is None else "Invalid") + " receiver credential: send "
                    "'Authorization: Bearer <the tenant's event receiver token>' (not Entra's "
                    "token)", {"WWW-Authenticate": 'Bearer realm="events"'}))
            try:
                return await handler(request)
            except EventsError as e:
                return error_response(e)
            except NoSigningKey as e:  # the platform team's to fix; /readyz says so too
                return error_response(EventsError(503, "invalid_request", str(e),
                                                  {"Retry-After": "30"}))
        return endpoint

    async def jwks(self, request: Request) -> Response:
        return Response(orjson.dumps(self.stream.keys.jwks()), media_type="application/json",
                        headers={"Cache-Control": "max-age=300"})

    # -- RFC 8936 poll ----------------------------------------------------------------------

    async def poll(self, request: Request) -> Response:
        if self.stream.push:
            raise EventsError(409, "invalid_request", "This stream is delivered by push to its "
                              "configured endpoint; poll is off while push is on")
        body = await _read_object(request)
        max_events = body.get("maxEvents", MAX_POLL_EVENTS)
        if not isinstance(max_events, int) or isinstance(max_events, bool) or \
                not 0 <= max_events <= MAX_POLL_EVENTS:
            raise EventsError(400, "invalid_request", f"maxEvents must be an integer from 0 "
                              f"to {MAX_POLL_EVENTS} (got {str(max_events)[:40]})")
        immediately = body.get("returnImmediately", False)
        if not isinstance(immediately, bool):
            raise EventsError(400, "invalid_request", "returnImmediately must be true or false")
        ack = body.get("ack", [])
        if not isinstance(ack, list) or not all(isinstance(j, str) for j in ack):
            raise EventsError(400, "invalid_request", "ack must be an array of jti strings")
        set_errs = body.get("setErrs", {})
        if not isinstance(set_errs, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("err"), str) for v in set_errs.values()):
            raise EventsError(400, "invalid_request", "setErrs must map each jti to an object "
                              "with a string 'err' (RFC 8936 §2.6)")
        try:
            acked = await self.stream.acknowledge(ack, set_errs)
        except InvalidJti as e:
            raise EventsError(400, "invalid_request", f"Nothing was acknowledged: {e}") \
                from None
        self.metrics.events_delivered(acked, "poll")
        deadline = time.monotonic() + self.stream.settings.poll_wait
        while True:
            batch = await self.stream.batch(max_events or 1)
            remaining = deadline - time.monotonic()
            # maxEvents 0 only acknowledges; without returnImmediately it still waits for an
            # event to be ready, as RFC 8936 §2.4.2 says, and returns none.
            if batch.sets or immediately or remaining <= 0 or self.stream.closing.is_set():
                out: dict = {"sets": batch.sets if max_events else {}}
                if max_events and batch.more:
                    out["moreAvailable"] = True
                return Response(orjson.dumps(out), media_type="application/json")
            if await self.stream.wait(batch.head, remaining):
                # Woken by a commit: let the rest of a burst join this answer. A receiver that
                # keeps up would otherwise poll once per event, and each poll costs the server
                # more than the events in it (measured: bench/events.py, "on and drained").
                await asyncio.sleep(POLL_LINGER)

    # -- snapshot and tail -------------------------------------------------------------------

    async def snapshot(self, request: Request) -> Response:
        stream = self.stream
        issuer = stream.issuer

        async def lines():
            digest, counts = hashlib.sha256(), {}
            async with stream.storage.snapshot() as snap:
                head = _line({"position": str(snap.position), "stream": snap.stream,
                              "issuer": issuer})
                digest.update(head)
                yield head
                for rt in (USER_TYPE, GROUP_TYPE):
                    counts[rt.name] = 0
                    async for batch in snap.batches(rt):
                        chunk = b"".join(_line(render(rt, s, issuer)) for s in batch)
                        counts[rt.name] += len(batch)
                        digest.update(chunk)
                        yield chunk
                # The trailer proves the snapshot whole and unchanged: a cut connection
                # has none, and its signature covers every line before it.
                proof = {"iss": issuer, "iat": int(time.time()), "position": str(snap.position),
                         "stream": snap.stream, "sha256": digest.hexdigest(),
                         "users": counts["User"], "groups": counts["Group"]}
                yield _line({"end": True, **proof,
                             "signature": stream.keys.sign(orjson.dumps(proof))})

        return StreamingResponse(lines(), media_type=NDJSON)

    async def tail(self, request: Request) -> Response:
        stream = self.stream
        params = request.query_params
        after_text = params.get("after", "0")
        if not after_text.isascii() or not after_text.isdigit() or len(after_text) > 19:
            raise EventsError(400, "invalid_request", "after must be a stream position (a seq)")
        after = int(after_text)
        follow = params.get("follow", "") in ("1", "true")

        async def lines():
            last = after
            state = await stream.storage.stream_state(counts=False)
            if state.gap:
                yield _line({"gap": stream.gap_claims(state)})
            # The backlog first (what the receiver has not acknowledged), then what commits,
            # from memory: a receiver may acknowledge an event before a watcher reads it.
            while True:
                events = await stream.storage.read_events(MAX_POLL_EVENTS, last)
                for e in events:
                    yield _line(stream.claims(state.stream, e))
                    last = e.seq
                if len(events) < MAX_POLL_EVENTS:
                    break
            # What was acknowledged before the watch began is not "missed": follow from the
            # head the watch began at.
            last = max(last, state.head)
            while follow and not stream.closing.is_set():
                events, missed = stream.storage.recent_events(last)
                if missed:
                    yield _line({"missed": "events this server no longer holds in memory"})
                if not events:
                    # Not in this process's memory: committed by another process on the same
                    # database (PostgreSQL replicas), read from the outbox while unacknowledged.
                    # The head first: what is at or below it and not read was acknowledged.
                    head = (await stream.storage.stream_state(counts=False)).head
                    events = await stream.storage.read_events(MAX_POLL_EVENTS, last)
                    first = events[0].seq if events else head + 1
                    if first > last + 1:
                        yield _line({"missed": "events the receiver acknowledged before this "
                                               "watch read them"})
                        last = first - 1
                for e in events:
                    yield _line(stream.claims(state.stream, e))
                    last = e.seq
                if not events and not await stream.wait(last, _HEARTBEAT):
                    yield b"\n"  # a heartbeat: proxies keep the connection, gone clients show

        return StreamingResponse(lines(), media_type=NDJSON)


async def _read_object(request: Request) -> dict:
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > _MAX_POLL_BODY:
                raise EventsError(413, "invalid_request",
                                  f"The poll body is larger than {_MAX_POLL_BODY} bytes")
    except ClientDisconnect:
        raise EventsError(408, "invalid_request", "The connection closed before the poll "
                          "body arrived") from None
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise EventsError(400, "invalid_request", f"The poll body is not JSON: {e.msg} "
                          f"(position {e.pos})") from None
    if not isinstance(value, dict):
        raise EventsError(400, "invalid_request", "The poll body must be a JSON object "
                          "(RFC 8936 §2.2)")
    return value
