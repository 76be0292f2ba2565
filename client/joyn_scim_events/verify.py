"""Verifying SETs: the signature against the tenant's JWKS, the explicit type, issuer and
audience (RFC 8417 §4, RFC 8935 §2). joserfc does the JOSE; nothing here is cryptography.

The JWKS is fetched once and again when a SET names a key it does not hold (a rotation), at
most once every `refresh_interval` seconds, so a flood of bad SETs cannot make the client
hammer the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from .model import SetError

SET_TYPE = "secevent+jwt"
ALGORITHMS = ("ES256", "ES384")


class Verifier:
    """Checks SETs from one tenant. `fetch_jwks()` returns the JWKS as a dict (PollReceiver
    and PushReceiver pass one that GETs `<server>/events/jwks.json`)."""

    def __init__(self, issuer: str, audience: str, fetch_jwks: Callable[[], dict],
                 refresh_interval: float = 10.0) -> None:
        self.issuer = issuer
        self.audience = audience
        self._fetch = fetch_jwks
        self._refresh_interval = refresh_interval
        self._keys: KeySet | None = None
        self._fetched_at = 0.0

    def _keyset(self, force: bool = False) -> KeySet:
        now = time.monotonic()
        if self._keys is None or (force and now - self._fetched_at >= self._refresh_interval):
            self._keys = KeySet.import_key_set(self._fetch())
            self._fetched_at = now
        return self._keys

    def verify(self, token: str | bytes) -> dict:
        """The SET's claims if it is authentic, typed as a SET, from our issuer, for us;
        otherwise SetError with the RFC 8935 err code that says why."""
        try:
            header = jws.extract_compact(_bytes(token)).protected
        except (JoseError, ValueError):
            raise SetError("invalid_request", "not a compact JWS") from None
        if header.get("typ") != SET_TYPE:
            raise SetError("invalid_request", f"typ is {header.get('typ')!r}, not {SET_TYPE}")
        kid = header.get("kid")
        keys = self._keyset()
        if kid is not None and not any(k.kid == kid for k in keys.keys):
            keys = self._keyset(force=True)  # a key published since the last fetch
        try:
            obj = jws.deserialize_compact(_bytes(token), keys, algorithms=list(ALGORITHMS))
            claims = json.loads(obj.payload)
        except (JoseError, ValueError) as e:
            raise SetError("invalid_key", f"the signature does not verify: {e}") from None
        if claims.get("iss") != self.issuer:
            raise SetError("invalid_issuer", f"iss is {claims.get('iss')!r}")
        aud = claims.get("aud")
        if self.audience != aud and not (isinstance(aud, list) and self.audience in aud):
            raise SetError("invalid_audience", f"aud is {aud!r}, not {self.audience!r}")
        if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("iat"), int):
            raise SetError("invalid_request", "a SET needs a string jti and a numeric iat")
        return claims

    def verify_detached(self, token: str) -> dict:
        """A JWS whose payload is a JSON object of ours (the snapshot's proof), verified."""
        try:
            obj = jws.deserialize_compact(_bytes(token), self._keyset(force=True),
                                          algorithms=list(ALGORITHMS))
            return json.loads(obj.payload)
        except (JoseError, ValueError) as e:
            raise SetError("invalid_key", f"the signature does not verify: {e}") from None


def _bytes(token: str | bytes) -> bytes:
    return token.encode() if isinstance(token, str) else token
