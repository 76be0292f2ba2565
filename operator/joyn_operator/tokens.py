"""The lifecycle of the credentials the operator generates, as pure functions: create once,
rotate on request with an overlap, expire each previous one at its deadline, and say so loudly
when a deleted Secret forced a new one. One lifecycle, three kinds (`Kind`): Entra's bearer
token, the event receiver's token and the event signing key. The state lives in each one's
Secret (its data and annotations), so it survives operator restarts and status resets.

Nothing here ever puts a token or key into an event message, a log line or status.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from . import signing
from .keys import (
    ISSUED_AT,
    PREVIOUS_SIGNING_KEYS_KEY,
    PREVIOUS_TOKEN_KEY,
    PREVIOUS_VALID_UNTIL,
    REPLACED_ACK,
    REPLACED_ACK_ANNOTATION,
    REPLACED_AT,
    ROTATED_AT,
    ROTATION_ID,
    SIGNING_KEY_KEY,
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


def _lines(text: str) -> list[str]:
    return [t.strip() for t in text.splitlines() if t.strip()]


@dataclass(frozen=True)
class Kind:
    """One kind of generated credential: the Secret keys it lives in, how a new one is made,
    what a replaced one is kept as during its overlap, and its words in Events (`reason`
    prefixes them: TokenRotated, EventsTokenRotated, SigningKeyRotated, ...)."""

    reason: str
    noun: str  # in messages: "token", "event receiver token", "event signing key"
    current_key: str
    previous_key: str
    generate: Callable[[], str]
    # A previous one as it is kept: the token itself; a signing key's public half, because a
    # receiver only verifies with it, and a private key kept longer than needed is a risk.
    retire: Callable[[str], str] = str
    clean: Callable[[str], str] = str.strip  # a value as read back from the Secret
    usable: Callable[[str], bool] = bool  # a current value a hand edit left unusable is none
    split: Callable[[str], list[str]] = _lines
    join: Callable[[list[str]], str] = "\n".join
    generated: str = "Generated the tenant's {noun}"
    rotated: str = "A new {noun} is current; the previous one stays valid until {until}"
    expired: str = "A previous {noun}'s overlap ended; it no longer works"
    # Who holds it, for the Warning when its Secret was deleted and a new one made.
    lost: str = ""
    acknowledged: bool = False  # a replacement stays loud until the acknowledge annotation


TOKEN = Kind(
    reason="Token", noun="token", current_key=TOKEN_KEY, previous_key=PREVIOUS_TOKEN_KEY,
    generate=new_token, generated="Generated the tenant's bearer token",
    lost="The token Secret was deleted, so a new token was generated: the token Entra holds no "
         "longer works. Give the customer's Entra admin the new token (kubectl joyn handover "
         "--rotation), then acknowledge: kubectl joyn acknowledge, or the annotation "
         f"{REPLACED_ACK_ANNOTATION}=<any new value>",
    acknowledged=True)
EVENTS_TOKEN = Kind(
    reason="EventsToken", noun="event receiver token", current_key=TOKEN_KEY,
    previous_key=PREVIOUS_TOKEN_KEY, generate=new_token,
    lost="The event receiver token's Secret was deleted, so a new token was generated: the "
         "Joyn FSM application's receiver is refused until it uses the new one "
         "(kubectl joyn credentials <tenant> --events)")
SIGNING_KEY = Kind(
    reason="SigningKey", noun="event signing key", current_key=SIGNING_KEY_KEY,
    previous_key=PREVIOUS_SIGNING_KEYS_KEY, generate=signing.new_private_key,
    retire=signing.public_pem, clean=signing.clean_pem, usable=signing.is_private_key,
    split=signing.split_pem, join="".join,
    rotated="A new {noun} signs; the previous one's public key stays published until {until}",
    expired="A previous {noun}'s overlap ended; its public key is no longer published",
    lost="The event signing key's Secret was deleted, so a new key was generated; receivers "
         "that cache the JWKS fetch it again when they see the new key id")


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
    kind: Kind = field(default=TOKEN, repr=False)

    @property
    def previous_valid_until(self) -> datetime | None:
        """The next deadline: when the oldest promised token stops working."""
        return min((p.valid_until for p in self.previous), default=None)

    def data(self) -> dict[str, str]:
        """The Secret's keys. The previous key holds every promised one (a token a line, or
        the PEM blocks; the server accepts each), so a second rotation during an overlap
        keeps the first one's promise."""
        out = {self.kind.current_key: self.current}
        if self.previous:
            out[self.kind.previous_key] = self.kind.join([p.token for p in self.previous])
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
                    now: datetime, kind: Kind = TOKEN) -> TokenState | None:
        """From the decoded Secret data and its annotations; None if it holds no usable
        credential. A previous one without a readable deadline ends now (nothing promised it
        longer)."""
        current = kind.clean(data.get(kind.current_key) or "")
        if not current.strip() or not kind.usable(current):
            return None
        tokens = kind.split(data.get(kind.previous_key) or "")
        deadlines = [parse_time(d.strip()) for d in
                     (annotations.get(PREVIOUS_VALID_UNTIL) or "").split(",") if d.strip()]
        deadlines += [now] * (len(tokens) - len(deadlines))
        return cls(current=current, issued_at=parse_time(annotations.get(ISSUED_AT)) or now,
                   previous=tuple(Previous(t, d) for t, d in zip(tokens, deadlines, strict=False)),
                   rotated_at=parse_time(annotations.get(ROTATED_AT)),
                   rotation_id=annotations.get(ROTATION_ID),
                   replaced_at=parse_time(annotations.get(REPLACED_AT)),
                   replaced_ack=annotations.get(REPLACED_ACK), kind=kind)


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


def next_state(existing: TokenState | None, rotate_request: str | None, valid_for: timedelta,
               now: datetime, generate: Callable[[], str] | None = None, *, kind: Kind = TOKEN,
               lost: bool = False, acknowledge: str | None = None,
               refuse: str | None = None) -> tuple[TokenState, list[Event]]:
    """The state of one credential of `kind` after this reconcile, and the events it causes.

    - None yet: generate one, the only time one is made without a request. `lost`: the tenant
      had one before (its Secret was deleted), so this one replaces the one its holder has (a
      Warning); for Entra's token the state says so until `acknowledge` (the annotation)
      changes.
    - Promised ones whose deadline has passed are dropped.
    - `rotate_request` (the annotation's value) differs from the last one acted on: the
      current one joins the promised ones (as `kind.retire` keeps it), valid until now +
      `valid_for`, and a new one is current. Earlier promises stand: a second rotation in an
      overlap locks nobody out. With MAX_PREVIOUS promises open, or with a `refuse` reason
      (the request itself is invalid), the request is refused (and not retried).
    Otherwise the state is returned unchanged: reconciles and restarts never change one.
    """
    generate = generate or kind.generate
    noun = kind.noun
    if existing is None:
        state = TokenState(current=generate(), issued_at=now, rotation_id=rotate_request,
                           kind=kind)
        if not lost:
            return state, [Event(f"{kind.reason}Generated", kind.generated.format(noun=noun))]
        if kind.acknowledged:
            state = replace(state, replaced_at=now, replaced_ack=acknowledge)
        return state, [Event(f"{kind.reason}Replaced", kind.lost, "Warning")]
    events: list[Event] = []
    state = existing
    alive = tuple(p for p in state.previous if p.valid_until > now)
    if alive != state.previous:
        state = replace(state, previous=alive)
        events.append(Event(f"Previous{kind.reason}Expired", kind.expired.format(noun=noun)))
    if rotate_request and rotate_request != state.rotation_id:
        if refuse:
            state = replace(state, rotation_id=rotate_request)
            events.append(Event("RotationRefused", refuse, "Warning"))
        elif len(state.previous) >= MAX_PREVIOUS:
            state = replace(state, rotation_id=rotate_request)
            events.append(Event("RotationRefused", f"{MAX_PREVIOUS} previous {noun}s are "
                                f"still valid; rotate again after "
                                f"{fmt(state.previous_valid_until)}", "Warning"))
        else:
            until = now + valid_for
            state = replace(state, current=generate(), issued_at=now, rotated_at=now,
                            previous=(*state.previous,
                                      Previous(kind.retire(state.current), until)),
                            rotation_id=rotate_request)
            events.append(Event(f"{kind.reason}Rotated",
                                kind.rotated.format(noun=noun, until=fmt(until))))
    if state.replaced_at and acknowledge != state.replaced_ack:
        state = replace(state, replaced_at=None, replaced_ack=None)
        events.append(Event(f"{kind.reason}ReplacementAcknowledged",
                            f"The replaced {noun} was acknowledged"))
    return state, events
