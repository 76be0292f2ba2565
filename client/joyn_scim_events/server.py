"""The tenant's event endpoints, as the receiver calls them: the JWKS, RFC 8936 poll and the
snapshot. The receiver credential goes in every call but the JWKS (which is public)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .model import Position, SetError, Snapshot
from .verify import Verifier


class ServerError(Exception):
    """The server refused a call or could not be reached; `status` is 0 for no answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"{status or 'no answer'}: {detail}")
        self.status = status


class EventServer:
    """One tenant's server, e.g. `http://acme-scim.tenants.svc:8080` (its Service, not the
    Tenant URL: the event endpoints are not behind the tenant's Ingress)."""

    def __init__(self, url: str, token: str, http: httpx.Client | None = None,
                 timeout: float = 60.0) -> None:
        # The server's address, or its poll endpoint as `kubectl joyn credentials --events`
        # prints it (JOYN_EVENTS_URL): both name the same server.
        self.url = url.rstrip("/").removesuffix("/events")
        self._auth = {"Authorization": f"Bearer {token}"}
        self.http = http or httpx.Client(timeout=timeout)

    def _check(self, r: httpx.Response) -> httpx.Response:
        if r.status_code != 200:
            try:
                detail = r.json().get("description", r.text[:200])
            except ValueError:
                detail = r.text[:200]
            raise ServerError(r.status_code, detail)
        return r

    def jwks(self) -> dict:
        try:
            return self._check(self.http.get(f"{self.url}/events/jwks.json")).json()
        except httpx.HTTPError as e:
            raise ServerError(0, f"the JWKS: {type(e).__name__}") from None

    def poll(self, body: dict, wait: float) -> dict:
        """One RFC 8936 poll; `wait` is how long the server may hold a long poll."""
        try:
            r = self.http.post(f"{self.url}/events", json=body, headers=self._auth,
                               timeout=httpx.Timeout(10.0, read=wait + 30.0))
        except httpx.HTTPError as e:
            raise ServerError(0, f"poll: {type(e).__name__}") from None
        return self._check(r).json()

    @contextmanager
    def snapshot(self, verifier: Verifier) -> Iterator[Snapshot]:
        """The tenant's users and groups at one position, read as they stream in. The
        iterators raise SetError at the end if the snapshot is cut short, altered or not
        signed by the tenant's key: a store's reset must then not take effect."""
        with self.http.stream("GET", f"{self.url}/events/snapshot", headers=self._auth,
                              timeout=httpx.Timeout(10.0, read=120.0)) as r:
            if r.status_code != 200:
                r.read()
                self._check(r)
            reader = _SnapshotReader(_lines(r.iter_bytes()), verifier)
            yield reader.snapshot()


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines, each with its newline, exactly as sent (the digest covers the bytes)."""
    rest = b""
    for chunk in chunks:
        rest += chunk
        *whole, rest = rest.split(b"\n")
        for line in whole:
            yield line + b"\n"
    if rest:
        yield rest


class _SnapshotReader:
    def __init__(self, lines: Iterator[bytes], verifier: Verifier) -> None:
        self.lines = lines
        self.verifier = verifier
        self.digest = hashlib.sha256()
        self.counts = {"User": 0, "Group": 0}
        self.pending: dict | None = None  # the first group, read while reading users

    def _next(self) -> dict:
        line = next(self.lines, None)
        if line is None:
            raise SetError("invalid_request", "the snapshot ended before its last line")
        value = json.loads(line)
        if not value.get("end"):
            self.digest.update(line)
        return value

    def snapshot(self) -> Snapshot:
        head = self._next()
        self.issuer_position = Position(head["stream"], int(head["position"]))
        if head.get("issuer") != self.verifier.issuer:
            raise SetError("invalid_issuer", f"the snapshot is from {head.get('issuer')!r}")
        return Snapshot(self.issuer_position, self._users(), self._groups())

    def _users(self) -> Iterator[dict]:
        while True:
            value = self._next()
            if value.get("end") or value.get("meta", {}).get("resourceType") != "User":
                self.pending = value
                return
            self.counts["User"] += 1
            yield value

    def _groups(self) -> Iterator[dict]:
        value = self.pending if self.pending is not None else self._next()
        while not value.get("end"):
            self.counts["Group"] += 1
            yield value
            value = self._next()
        self._check_end(value)

    def _check_end(self, end: dict) -> None:
        proof = self.verifier.verify_detached(end.get("signature", ""))
        position = self.issuer_position
        expected = {"sha256": self.digest.hexdigest(), "users": self.counts["User"],
                    "groups": self.counts["Group"], "position": str(position.seq),
                    "stream": position.stream, "iss": self.verifier.issuer}
        wrong = [k for k, v in expected.items() if proof.get(k) != v or end.get(k) != v]
        if wrong:
            raise SetError("invalid_request", f"the snapshot does not match its signed proof "
                                              f"({', '.join(wrong)})")
