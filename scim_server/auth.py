"""Bearer-token authentication against token files that may change while the server runs.

The files are watched (watched.py), so a rotated Secret takes effect without a restart. Tokens
are compared in constant time, and all of them are always compared, so timing says nothing
about which token (if any) nearly matched. A file holds one token a line: the operator keeps
every previous token it promised in one Secret key. The same class checks Entra's tokens and,
with other files, the event receiver's credential (events/routes.py).
"""

from __future__ import annotations

import hmac

from .watched import WatchedFiles


def _lines(data: bytes) -> tuple[bytes, ...]:
    return tuple(t for t in (line.strip() for line in data.splitlines()) if t)


class TokenStore:
    def __init__(self, paths: list[str], recheck_seconds: float = 1.0, what: str = "token") -> None:
        self._files = WatchedFiles(paths, _lines, (), what, recheck_seconds)
        self._generation = -1
        self._tokens: tuple[bytes, ...] = ()

    @property
    def count(self) -> int:
        """How many valid tokens are loaded now (never the tokens themselves)."""
        return len(self._current())

    def _current(self) -> tuple[bytes, ...]:
        self._files.refresh()  # one clock read, unless a second has passed
        if self._files.generation != self._generation:
            self._generation = self._files.generation
            self._tokens = tuple(t for tokens in self._files.values for t in tokens)
        return self._tokens

    def check(self, header: bytes | None) -> bool:
        """Is `header` (the raw Authorization value) `Bearer <one of our tokens>`?"""
        tokens = self._current()
        if not header or len(header) < 8 or header[:7].lower() != b"bearer ":
            return False
        presented = header[7:].strip()
        ok = False
        for token in tokens:
            ok |= hmac.compare_digest(presented, token)
        return ok
