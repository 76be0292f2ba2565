"""The delivery side of a tenant's event stream, shared by poll, push, tail and the snapshot.

Delivery is at least once and in order: a batch is always the oldest events not yet
acknowledged (a gap first, when there is one), so an event that is not acknowledged comes
again, in its place, with the same jti and content, until it is. One receiver consumes the
stream, by poll or by push; `tail` only watches.

Signing is the costly step (an ECDSA signature per SET), so it runs on a thread of its own
(the event loop goes on serving Entra meanwhile) and its results are kept: a SET delivered again
is the same bytes, and while a receiver verifies one batch the next is being signed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import orjson

from ..durations import parse_duration
from ..limits import MAX_POLL_EVENTS
from ..storage import Outboxed, Storage, StreamState
from . import DEFAULT_AUDIENCE, DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT, sets
from .keys import SigningKeys

log = logging.getLogger("scim_server.events")

_SIGNED_KEPT = 4 * MAX_POLL_EVENTS  # signed SETs kept for redelivery and ahead of the receiver


@dataclass(frozen=True)
class EventSettings:
    """How the stream is delivered; `joyn-scim serve --events-*` sets each."""

    token_files: tuple[str, ...]  # the receiver's credential (poll, tail, snapshot)
    signing_key_files: tuple[str, ...]
    audience: str = DEFAULT_AUDIENCE
    push_url: str | None = None
    push_authorization_file: str | None = None  # the whole Authorization header's value
    push_timeout: float = 10.0
    retention_age: float = parse_duration(DEFAULT_RETENTION).total_seconds()
    retention_count: int = DEFAULT_RETENTION_COUNT
    poll_wait: float = 30.0  # the longest a long poll waits for an event


class InvalidJti(ValueError):
    """An ack or setErr naming a jti this stream never issued."""


@dataclass(frozen=True)
class Delivery:
    """A batch for the receiver: SETs by jti in stream order, and whether more wait."""

    sets: dict[str, str]
    more: bool
    head: int  # the stream's head before the batch was read: wait for events after it


class EventStream:
    def __init__(self, settings: EventSettings, issuer: str, keys: SigningKeys,
                 storage: Storage | None = None) -> None:
        self.settings = settings
        self.issuer = issuer
        self.keys = keys
        self.storage = storage  # set by the app's lifespan
        self.closing = asyncio.Event()  # set at shutdown: long polls answer at once
        self._signer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-signer")
        self._signed: dict[int, str] = {}
        self._signed_generation = -1
        self._ahead: asyncio.Future | None = None

    @property
    def push(self) -> bool:
        return self.settings.push_url is not None

    async def state(self) -> StreamState:
        return await self.storage.stream_state()

    # -- batches ----------------------------------------------------------------------------

    async def batch(self, limit: int = MAX_POLL_EVENTS) -> Delivery:
        state = await self.storage.stream_state(counts=False)
        out: dict[str, str] = {}
        if state.gap:
            claims = self.gap_claims(state)
            out[claims["jti"]] = self.keys.sign(orjson.dumps(claims))
        events = await self.storage.read_events(limit + 1)
        more = len(events) > limit
        events = events[:limit]
        if events:  # forget what was signed for events gone meanwhile (discarded, lost)
            for seq in [s for s in self._signed if s < events[0].seq]:
                del self._signed[seq]
        out.update(await self._sign(state.stream, events))
        self._sign_ahead(state.stream, events[-1].seq if more else 0)
        return Delivery(out, more, state.head)

    async def _sign(self, stream: str, events: list[Outboxed]) -> dict[str, str]:
        if self._signed_generation != self.keys.generation:  # a new key signs from now on
            self._signed.clear()
            self._signed_generation = self.keys.generation
        missing = [e for e in events if e.seq not in self._signed]
        if missing:
            if self._ahead is not None and not self._ahead.done():
                await asyncio.shield(self._ahead)  # signing those already, perhaps
                missing = [e for e in missing if e.seq not in self._signed]
            if missing:
                await asyncio.get_running_loop().run_in_executor(
                    self._signer, self._sign_all, stream, missing)
        return {sets.jti(stream, e.seq): self._signed[e.seq] for e in events}

    def gap_claims(self, state: StreamState) -> dict:
        """The resync SET of the stream's gap, before signing."""
        return sets.gap_claims(state, int(time.time()), self.issuer, self.settings.audience)

    def claims(self, stream: str, event: Outboxed) -> dict:
        """An event's SET before signing (what `events tail` shows)."""
        return sets.claims(event, stream, self.issuer, self.settings.audience)

    def _sign_all(self, stream: str, events: Iterable[Outboxed]) -> None:
        # A rotation meanwhile may leave SETs signed with the key it replaced: that key stays
        # published for the overlap, and its end (a key change too) clears what was kept.
        for e in events:
            self._signed[e.seq] = self.keys.sign(orjson.dumps(self.claims(stream, e)))

    def _sign_ahead(self, stream: str, after: int) -> None:
        """Sign the next batch while the receiver handles this one."""
        if not after or len(self._signed) >= _SIGNED_KEPT or \
                (self._ahead is not None and not self._ahead.done()):
            return

        async def ahead() -> None:
            try:
                events = await self.storage.read_events(MAX_POLL_EVENTS, after)
                todo = [e for e in events if e.seq not in self._signed]
                if todo:
                    await asyncio.get_running_loop().run_in_executor(
                        self._signer, self._sign_all, stream, todo)
            except Exception:  # only a head start: the next batch signs what it lacks
                log.debug("signing ahead failed", exc_info=True)

        self._ahead = asyncio.ensure_future(ahead())

    # -- acknowledgements -------------------------------------------------------------------

    async def acknowledge(self, jtis: Iterable[object], rejected: dict | None = None) -> int:
        """Forget what the receiver acknowledged. Every jti is checked before anything
        changes: one this stream never issued is InvalidJti, and nothing is acknowledged.
        A jti acknowledged before is fine (a receiver retrying a poll whose answer it lost).
        `rejected` (RFC 8936 setErrs) are SETs the receiver could not accept: they are
        forgotten too, and the loss is a gap, so the receiver is told to resync."""
        state = await self.storage.stream_state(counts=False)
        seqs, gaps, lost = [], [], []
        rejected = rejected or {}
        for value, into in [*((j, seqs) for j in jtis), *((j, lost) for j in rejected)]:
            parsed = sets.parse_jti(state.stream, value)
            if parsed is None or parsed[1] > state.head:
                raise InvalidJti(f"{str(value)[:80]!r} is not a jti this stream issued")
            (gaps if parsed[0] == "gap" else into).append(parsed[1])
        gone = await self.storage.ack_events(seqs) if seqs else 0
        for through in gaps:
            await self.storage.ack_gap(through)
        if rejected:
            errs = sorted({str(v.get("err"))[:40] if isinstance(v, dict) else "?"
                           for v in rejected.values()})
            await self.storage.lose_events(
                lost, f"the receiver rejected {len(rejected)} SET(s): {', '.join(errs)}")
            log.warning("the receiver rejected SETs: it is told to resync",
                        extra={"sets": len(rejected), "errors": errs})
        for s in seqs:
            self._signed.pop(s, None)
        return gone

    # -- waiting ----------------------------------------------------------------------------

    async def wait(self, after: int, timeout: float) -> bool:
        """Until an event after `after` commits (True), `timeout` passes or the server stops."""
        waiter = asyncio.ensure_future(self.storage.wait_for_events(after, timeout))
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait({waiter, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            if not waiter.done():
                waiter.cancel()
        return waiter.done() and not waiter.cancelled() and waiter.result()

    async def maintain(self, every: float = 60.0) -> None:
        """The retention, applied once a minute for as long as the server runs."""
        while not self.closing.is_set():
            try:
                await self.storage.trim_events(self.settings.retention_age,
                                               self.settings.retention_count)
            except Exception:  # a failed trim is retried next time; it must not end the loop
                log.exception("applying the event retention failed")
            try:
                await asyncio.wait_for(self.closing.wait(), every)
            except TimeoutError:
                pass

    def close(self) -> None:
        self.closing.set()
        self._signer.shutdown(wait=False, cancel_futures=True)
