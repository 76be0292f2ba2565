"""Bearer-token authentication against token files that may change while the server runs.

Kubernetes updates a mounted Secret by swapping a symlink, so the files are re-read when their
identity (inode, size, mtime) changes; the check runs at most once per `recheck_seconds` so the
hot path costs one clock read. Tokens are compared in constant time, and all of them are always
compared, so timing says nothing about which token (if any) nearly matched. A file holds one
token a line: the operator keeps every previous token it promised in one Secret key.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from dataclasses import dataclass

log = logging.getLogger("scim_server.auth")


@dataclass
class _File:
    path: str
    stamp: tuple | None = None
    tokens: tuple[bytes, ...] = ()


class TokenStore:
    def __init__(self, paths: list[str], recheck_seconds: float = 1.0) -> None:
        self._files = [_File(p) for p in paths]
        self._recheck = recheck_seconds
        self._next_check = 0.0
        self._tokens: tuple[bytes, ...] = ()
        self.refresh(force=True)

    @property
    def count(self) -> int:
        """How many valid tokens are loaded now (never the tokens themselves)."""
        self.refresh()
        return len(self._tokens)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + self._recheck
        changed = False
        for f in self._files:
            try:
                st = os.stat(f.path)
                stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
            except FileNotFoundError:
                stamp = None
            if stamp == f.stamp and not force:
                continue
            f.stamp = stamp
            tokens: tuple[bytes, ...] = ()
            if stamp is not None:
                try:
                    with open(f.path, "rb") as fh:
                        tokens = tuple(t for t in (line.strip() for line in fh) if t)
                except OSError as e:
                    log.warning("token file unreadable", extra={"path": f.path,
                                                                "error": e.strerror})
            if tokens != f.tokens:
                f.tokens = tokens
                changed = True
                log.info("token file loaded" if tokens else "token file absent or empty",
                         extra={"path": f.path, "tokens": len(tokens)})
        if changed or force:
            self._tokens = tuple(t for f in self._files for t in f.tokens)

    def check(self, header: bytes | None) -> bool:
        """Is `header` (the raw Authorization value) `Bearer <one of our tokens>`?"""
        self.refresh()
        if not header or len(header) < 8 or header[:7].lower() != b"bearer ":
            return False
        presented = header[7:].strip()
        ok = False
        for token in self._tokens:
            ok |= hmac.compare_digest(presented, token)
        return ok
