"""The token lifecycle as pure functions: create once, rotate on request with an overlap, expire
the previous token at its deadline. The state lives in the token Secret (its data and
annotations), so it survives operator restarts and status resets.

Nothing here ever puts a token value into an event message, a log line or status.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from .keys import (
    ISSUED_AT,
    PREVIOUS_TOKEN_KEY,
    PREVIOUS_VALID_UNTIL,
    ROTATED_AT,
    ROTATION_ID,
    TOKEN_KEY,
)


def new_token() -> str:
    """256 bits from the OS's CSPRNG, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> timedelta:
    """`72h`, `24h30m`, `90s` (the CRD's pattern) as a timedelta."""
    m = _DURATION.match(text or "")
    if not m or not any(m.groups()):
        raise ValueError(f"not a duration: {text!r}")
    h, mi, s = (int(g or 0) for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)


def fmt(dt: datetime | None) -> str | None:
    return None if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class TokenState:
    current: str
    previous: str | None
    issued_at: datetime
    rotated_at: datetime | None = None
    previous_valid_until: datetime | None = None
    rotation_id: str | None = None

    def annotations(self) -> dict[str, str]:
        out = {ISSUED_AT: fmt(self.issued_at)}
        if self.rotated_at:
            out[ROTATED_AT] = fmt(self.rotated_at)
        if self.previous_valid_until and self.previous:
            out[PREVIOUS_VALID_UNTIL] = fmt(self.previous_valid_until)
        if self.rotation_id:
            out[ROTATION_ID] = self.rotation_id
        return out

    @classmethod
    def from_secret(cls, data: dict[str, str], annotations: dict[str, str],
                    now: datetime) -> TokenState | None:
        """From the decoded Secret data and its annotations; None if it holds no token."""
        current = (data.get(TOKEN_KEY) or "").strip()
        if not current:
            return None
        return cls(current=current, previous=(data.get(PREVIOUS_TOKEN_KEY) or "").strip() or None,
                   issued_at=parse_time(annotations.get(ISSUED_AT)) or now,
                   rotated_at=parse_time(annotations.get(ROTATED_AT)),
                   previous_valid_until=parse_time(annotations.get(PREVIOUS_VALID_UNTIL)),
                   rotation_id=annotations.get(ROTATION_ID))


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


def next_state(existing: TokenState | None, rotate_request: str | None, valid_for: timedelta,
               now: datetime, generate: Callable[[], str] = new_token
               ) -> tuple[TokenState, list[Event]]:
    """The token state after this reconcile, and the events it causes.

    - No token yet: generate one (the only time a token is created without a request).
    - `rotate_request` (the annotation's value) differs from the last one acted on: the current
      token becomes the previous one, valid until now + `valid_for`; a new one is current.
    - The previous token's deadline has passed: drop it.
    Otherwise the state is returned unchanged: reconciles and restarts never change a token.
    """
    events: list[Event] = []
    if existing is None:
        state = TokenState(current=generate(), previous=None, issued_at=now,
                           rotation_id=rotate_request)
        events.append(Event("TokenGenerated", "Generated the tenant's bearer token"))
        return state, events
    state = existing
    if rotate_request and rotate_request != existing.rotation_id:
        until = now + valid_for
        state = TokenState(current=generate(), previous=existing.current, issued_at=now,
                           rotated_at=now, previous_valid_until=until,
                           rotation_id=rotate_request)
        events.append(Event("TokenRotated", f"A new token is current; the previous one stays "
                                            f"valid until {fmt(until)}"))
        return state, events
    if state.previous and state.previous_valid_until and now >= state.previous_valid_until:
        state = replace(state, previous=None, previous_valid_until=None)
        events.append(Event("PreviousTokenExpired",
                            "The previous token's overlap ended; only the current token works"))
    return state, events
