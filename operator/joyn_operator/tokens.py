"""The token lifecycle as pure functions: create once, rotate on request with an overlap, expire
each previous token at its deadline, and say so loudly when a deleted Secret forced a new
token. The state lives in the token Secret (its data and annotations), so it survives
operator restarts and status resets.

Nothing here ever puts a token value into an event message, a log line or status.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from .keys import (
    ISSUED_AT,
    PREVIOUS_TOKEN_KEY,
    PREVIOUS_VALID_UNTIL,
    REPLACED_ACK,
    REPLACED_ACK_ANNOTATION,
    REPLACED_AT,
    ROTATED_AT,
    ROTATION_ID,
    TOKEN_KEY,
)


def new_token() -> str:
    """256 bits from the OS's CSPRNG, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


def fmt(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


MAX_PREVIOUS = 5  # promised tokens kept at once; one more rotation is refused until one ends


@dataclass(frozen=True)
class Previous:
    """A token that was current before a rotation, promised to work until `valid_until`."""

    token: str
    valid_until: datetime


@dataclass(frozen=True)
class TokenState:
    """What the token Secret holds: the current token, every previous token still promised
    (oldest first), and the lifecycle's timestamps. `replaced_at` is set when the Secret was
    deleted and a new token had to be made: Entra's token stopped working, and that stays loud
    until a person acknowledges it (`replaced_ack` is the acknowledge annotation's value then)."""

    current: str
    issued_at: datetime
    previous: tuple[Previous, ...] = ()
    rotated_at: datetime | None = None
    rotation_id: str | None = None
    replaced_at: datetime | None = None
    replaced_ack: str | None = None

    @property
    def previous_valid_until(self) -> datetime | None:
        """The next deadline: when the oldest promised token stops working."""
        return min((p.valid_until for p in self.previous), default=None)

    def data(self) -> dict[str, str]:
        """The Secret's token keys. previous-token holds one token a line (the server accepts
        each), so a second rotation during an overlap keeps the first one's promise."""
        out = {TOKEN_KEY: self.current}
        if self.previous:
            out[PREVIOUS_TOKEN_KEY] = "\n".join(p.token for p in self.previous)
        return out

    def annotations(self) -> dict[str, str]:
        out = {ISSUED_AT: fmt(self.issued_at)}
        if self.rotated_at:
            out[ROTATED_AT] = fmt(self.rotated_at)
        if self.previous:
            out[PREVIOUS_VALID_UNTIL] = ",".join(fmt(p.valid_until) for p in self.previous)
        if self.rotation_id:
            out[ROTATION_ID] = self.rotation_id
        if self.replaced_at:
            out[REPLACED_AT] = fmt(self.replaced_at)
            if self.replaced_ack:
                out[REPLACED_ACK] = self.replaced_ack
        return out

    @classmethod
    def from_secret(cls, data: dict[str, str], annotations: dict[str, str],
                    now: datetime) -> TokenState | None:
        """From the decoded Secret data and its annotations; None if it holds no token. A
        previous token without a readable deadline ends now (nothing promised it longer)."""
        current = (data.get(TOKEN_KEY) or "").strip()
        if not current:
            return None
        tokens = [t.strip() for t in (data.get(PREVIOUS_TOKEN_KEY) or "").splitlines()
                  if t.strip()]
        deadlines = [parse_time(d.strip()) for d in
                     (annotations.get(PREVIOUS_VALID_UNTIL) or "").split(",") if d.strip()]
        deadlines += [now] * (len(tokens) - len(deadlines))
        return cls(current=current, issued_at=parse_time(annotations.get(ISSUED_AT)) or now,
                   previous=tuple(Previous(t, d) for t, d in zip(tokens, deadlines, strict=False)),
                   rotated_at=parse_time(annotations.get(ROTATED_AT)),
                   rotation_id=annotations.get(ROTATION_ID),
                   replaced_at=parse_time(annotations.get(REPLACED_AT)),
                   replaced_ack=annotations.get(REPLACED_ACK))


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


def next_state(existing: TokenState | None, rotate_request: str | None, valid_for: timedelta,
               now: datetime, generate: Callable[[], str] = new_token, *, lost: bool = False,
               acknowledge: str | None = None,
               refuse: str | None = None) -> tuple[TokenState, list[Event]]:
    """The token state after this reconcile, and the events it causes.

    - No token yet: generate one, the only time a token is made without a request. `lost`:
      the tenant had one before (its Secret was deleted), so this one replaces the token
      Entra holds, and the state says so until `acknowledge` (the annotation) changes.
    - Promised tokens whose deadline has passed are dropped.
    - `rotate_request` (the annotation's value) differs from the last one acted on: the
      current token joins the promised ones, valid until now + `valid_for`, and a new one is
      current. Earlier promises stand: a second rotation in an overlap locks nobody out. With
      MAX_PREVIOUS promises open, or with a `refuse` reason (the request itself is invalid),
      the request is refused (and not retried).
    Otherwise the state is returned unchanged: reconciles and restarts never change a token.
    """
    if existing is None:
        state = TokenState(current=generate(), issued_at=now, rotation_id=rotate_request)
        if not lost:
            return state, [Event("TokenGenerated", "Generated the tenant's bearer token")]
        return replace(state, replaced_at=now, replaced_ack=acknowledge), [Event(
            "TokenReplaced", "The token Secret was deleted, so a new token was generated: the "
            "token Entra holds no longer works. Give the customer's Entra admin the new token, "
            f"then acknowledge with the annotation {REPLACED_ACK_ANNOTATION}=<any new value>",
            "Warning")]
    events: list[Event] = []
    state = existing
    alive = tuple(p for p in state.previous if p.valid_until > now)
    if alive != state.previous:
        state = replace(state, previous=alive)
        events.append(Event("PreviousTokenExpired",
                            "A previous token's overlap ended; it no longer works"))
    if rotate_request and rotate_request != state.rotation_id:
        if refuse:
            state = replace(state, rotation_id=rotate_request)
            events.append(Event("RotationRefused", refuse, "Warning"))
        elif len(state.previous) >= MAX_PREVIOUS:
            state = replace(state, rotation_id=rotate_request)
            events.append(Event("RotationRefused", f"{MAX_PREVIOUS} previous tokens are still "
                                f"valid; rotate again after {fmt(state.previous_valid_until)}",
                                "Warning"))
        else:
            until = now + valid_for
            state = replace(state, current=generate(), issued_at=now, rotated_at=now,
                            previous=(*state.previous, Previous(state.current, until)),
                            rotation_id=rotate_request)
            events.append(Event("TokenRotated", f"A new token is current; the previous one "
                                                f"stays valid until {fmt(until)}"))
    if state.replaced_at and acknowledge != state.replaced_ack:
        state = replace(state, replaced_at=None, replaced_ack=None)
        events.append(Event("TokenReplacementAcknowledged",
                            "The replaced token was acknowledged"))
    return state, events
