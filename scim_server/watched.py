"""Files mounted from Kubernetes Secrets, re-read when they change while the server runs.

The kubelet updates a mounted Secret by swapping a symlink, so a file is re-read when its
identity (inode, size, mtime) changes; the check runs at most once per `recheck_seconds`, so
the hot path (a bearer token check on every request) costs one clock read. Used for the bearer
tokens (auth.py), the receiver credential and the event signing keys (events/).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger("scim_server.files")

T = TypeVar("T")


@dataclass
class _File(Generic[T]):
    path: str
    stamp: tuple | None = None
    value: T | None = None


class WatchedFiles(Generic[T]):
    """The parsed contents of some files, kept current. `parse(bytes)` turns one file's bytes
    into its value (raising ValueError for a file it cannot use); a missing, unreadable or
    unusable file has the value `empty`. `generation` grows whenever any value changes."""

    def __init__(self, paths: list[str], parse: Callable[[bytes], T], empty: T, what: str,
                 recheck_seconds: float = 1.0) -> None:
        self._files: list[_File[T]] = [_File(p, value=empty) for p in paths]
        self._parse = parse
        self._empty = empty
        self._what = what
        self._recheck = recheck_seconds
        self._next_check = 0.0
        self.generation = 0
        self.refresh(force=True)

    @property
    def values(self) -> list[T]:
        """One value per path, in the order given (refreshed first when due)."""
        self.refresh()
        return [f.value for f in self._files]  # type: ignore[misc]

    def refresh(self, force: bool = False) -> bool:
        """Re-read the files whose identity changed; True if a value changed."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return False
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
            value = self._empty
            if stamp is not None:
                try:
                    with open(f.path, "rb") as fh:
                        value = self._parse(fh.read())
                except OSError as e:
                    log.warning(f"{self._what} file unreadable",
                                extra={"path": f.path, "error": e.strerror})
                except ValueError as e:  # the message names the problem, never the content
                    log.warning(f"{self._what} file unusable",
                                extra={"path": f.path, "error": str(e)})
            if value != f.value:
                f.value = value
                changed = True
                log.info(f"{self._what} file loaded" if value else
                         f"{self._what} file absent or empty", extra={"path": f.path})
        if changed:
            self.generation += 1
        return changed
