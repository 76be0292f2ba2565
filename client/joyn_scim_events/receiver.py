"""Following a tenant's stream into the application's store, by poll or by push.

Both receivers do the same with each SET, in stream order: verify it; if the store already
holds it (its position is at or past the event's, so a duplicate or part of the snapshot the
store started from), acknowledge it; otherwise hand it to `store.apply` and acknowledge it
only when that has returned. A store with no position, on another stream, or behind a resync
SET is first replaced from a snapshot. A SET that does not verify is reported to the server
(RFC 8936 setErrs, or an RFC 8935 400), which then tells the receiver to resync.
"""

from __future__ import annotations

import json
import logging
import random
import threading

from .model import Event, Resync, SetError, Store, parse_jti, read_event
from .server import EventServer, ServerError
from .verify import Verifier

log = logging.getLogger("joyn_scim_events")

DEFAULT_AUDIENCE = "joyn-fsm"


class _Follower:
    def __init__(self, server: EventServer, issuer: str, store: Store,
                 audience: str = DEFAULT_AUDIENCE) -> None:
        self.server = server
        self.store = store
        self.verifier = Verifier(issuer, audience, server.jwks)
        self.resyncs = 0

    def resync(self) -> None:
        """Replace the store's copy from a snapshot."""
        with self.server.snapshot(self.verifier) as snapshot:
            self.store.reset(snapshot)
        self.resyncs += 1
        log.info("store replaced from a snapshot", extra={"position": snapshot.position.seq})

    def ensure_started(self) -> None:
        if self.store.position() is None:
            self.resync()

    def resync_needed(self) -> None:
        """The store must be replaced before this SET: here, at once."""
        self.resync()

    def handle(self, token: str | bytes, jti: str | None = None) -> Event | Resync | None:
        """One SET (that came under `jti`, for a poll): applied (the Event), a resync done or
        not needed (the Resync), or already held (None). SetError if it does not verify;
        the store's errors propagate."""
        claims = self.verifier.verify(token)
        if jti is not None and claims["jti"] != jti:
            raise SetError("invalid_request", "the SET's jti is not the one it came under")
        event = read_event(claims["jti"], claims)
        position = self.store.position()
        if isinstance(event, Resync):
            if position is None or position.stream != event.stream or \
                    position.seq < event.through:
                self.resync_needed()
            return event
        if position is None or position.stream != event.position.stream:
            self.resync_needed()
            position = self.store.position()
        if event.position.seq <= position.seq:
            return None
        self.store.apply(event)
        return event


def _order(sets: dict[str, str]) -> list[tuple[str, str]]:
    """A batch in stream order: a resync first, then events by seq (a JSON object's order is
    kept by the server, but need not be by every JSON library in between)."""
    def key(item: tuple[str, str]) -> tuple[int, int]:
        position = parse_jti(item[0])
        return (1, position.seq) if position else (0, 0)
    return sorted(sets.items(), key=key)


class PollReceiver(_Follower):
    """Follow a tenant by RFC 8936 poll: `run()` until `stop` is set, or `poll_once()`.

    Acknowledgements ride on the next poll, as RFC 8936 intends, so each poll both confirms
    the last batch and fetches the next."""

    def __init__(self, server: EventServer, issuer: str, store: Store,
                 audience: str = DEFAULT_AUDIENCE, max_events: int = 1000,
                 wait: float = 30.0) -> None:
        super().__init__(server, issuer, store, audience)
        self.max_events = max_events
        self.wait = wait
        self.acks: list[str] = []
        self.errors: dict[str, dict] = {}

    def poll_once(self, return_immediately: bool = False) -> int:
        """One poll: send the pending acknowledgements, apply what comes back. Returns how
        many SETs came."""
        self.ensure_started()
        body: dict = {"maxEvents": self.max_events, "returnImmediately": return_immediately}
        if self.acks:
            body["ack"] = self.acks
        if self.errors:
            body["setErrs"] = self.errors
        answer = self.server.poll(body, self.wait)
        self.acks, self.errors = [], {}  # the server has them now
        sets = answer.get("sets") or {}
        for jti, token in _order(sets):
            try:
                self.handle(token, jti)
            except SetError as e:
                log.warning("a SET did not verify: reported to the server",
                            extra={"jti": jti, "err": e.err, "description": e.description})
                self.errors[jti] = {"err": e.err, "description": e.description}
                continue
            self.acks.append(jti)
        return len(sets)

    def flush(self) -> None:
        """Send the pending acknowledgements now, without waiting for events."""
        if self.acks or self.errors:
            self.server.poll({"maxEvents": 0, "returnImmediately": True, "ack": self.acks,
                              "setErrs": self.errors}, 0)
            self.acks, self.errors = [], {}

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll until `stop` is set. A failure (the server unreachable, the store raising)
        is logged and retried with back-off: nothing is acknowledged that was not stored,
        so nothing is lost."""
        stop = stop or threading.Event()
        failures = 0
        while not stop.is_set():
            try:
                self.poll_once()
                failures = 0
            except (ServerError, SetError, OSError, ValueError) as e:
                failures += 1
                delay = min(60.0, 0.5 * 2 ** min(failures, 7)) * random.uniform(0.5, 1)  # noqa: S311
                log.warning("polling failed; retrying", extra={"error": str(e)[:200],
                                                               "retry_in_s": round(delay, 1)})
                stop.wait(delay)
        try:
            self.flush()
        except ServerError:
            pass  # unacknowledged events come again, and are dropped as held


class PushReceiver(_Follower):
    """Receive RFC 8935 pushes: `handle_push(body)` gives the HTTP answer for one POST, and
    `wsgi` is a WSGI application doing the same (mount it at the URL given to the tenant's
    spec.events.push.url).

    A resync (the store holds nothing yet, or the stream said so) needs the snapshot, which
    takes longer than a push may: it runs on a thread, and meanwhile every push is answered
    503 with Retry-After, so the server keeps the events, in order, until the store is ready.
    """

    def __init__(self, server: EventServer, issuer: str, store: Store,
                 audience: str = DEFAULT_AUDIENCE) -> None:
        super().__init__(server, issuer, store, audience)
        self._lock = threading.Lock()  # one push at a time: order is the store's
        self._resyncing: threading.Thread | None = None
        self.resync_error: str | None = None

    def _start_resync(self) -> None:
        def work() -> None:
            try:
                self.resync()
                self.resync_error = None
            except Exception as e:  # shown on the next 503; the next push starts it again
                self.resync_error = f"{type(e).__name__}: {e}"[:200]
                log.warning("resync failed", extra={"error": self.resync_error})
            finally:
                self._resyncing = None
        self._resyncing = threading.Thread(target=work, name="joyn-scim-resync", daemon=True)
        self._resyncing.start()

    def resync_needed(self) -> None:
        raise _Busy()

    def handle_push(self, body: bytes, content_type: str = "application/secevent+jwt"
                    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for one pushed SET."""
        if self._resyncing is not None:
            return _busy(self.resync_error)
        if content_type.split(";")[0].strip().lower() != "application/secevent+jwt":
            return _error("invalid_request", "Content-Type must be application/secevent+jwt")
        token = body.strip()
        with self._lock:
            try:
                self.handle(token)
            except _Busy:
                self._start_resync()
                return _busy(None)
            except SetError as e:
                return _error(e.err, e.description)
        return 202, {}, b""

    def wsgi(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST")])
            return [b""]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        status, headers, out = self.handle_push(body, environ.get("CONTENT_TYPE", ""))
        reason = {202: "Accepted", 400: "Bad Request", 503: "Service Unavailable"}[status]
        start_response(f"{status} {reason}", [*headers.items(),
                                              ("Content-Length", str(len(out)))])
        return [out]


class _Busy(Exception):
    pass


def _error(err: str, description: str) -> tuple[int, dict[str, str], bytes]:
    return 400, {"Content-Type": "application/json", "Content-Language": "en"}, \
        json.dumps({"err": err, "description": description}).encode()


def _busy(error: str | None) -> tuple[int, dict[str, str], bytes]:
    detail = "resyncing from a snapshot" + (f" (last attempt failed: {error})" if error else "")
    return 503, {"Retry-After": "5", "Content-Type": "text/plain"}, detail.encode()
