"""The stream's signing keys: PEM files mounted from the tenant's signing-key Secret.

The first key of the first file signs; every key of every file is published in the JWKS
(`GET /events/jwks.json`), so during a rotation the receiver can verify SETs signed with the
previous key as well as the new one. Keys are EC (P-256 signs ES256, the default the operator
generates; P-384 signs ES384); each key's `kid` is its RFC 7638 thumbprint, so it names the key
and nothing else. The files are watched: a rotated Secret takes effect without a restart.

JOSE is joserfc's (the issue asks for a well-kept JOSE library, never hand-written crypto).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey

from ..watched import WatchedFiles

log = logging.getLogger("scim_server.events")

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----", re.S)
_ALG = {"P-256": "ES256", "P-384": "ES384"}
SET_TYPE = "secevent+jwt"  # RFC 8417 §2.3: the "typ" of every SET


class NoSigningKey(Exception):
    """No usable private key is loaded: nothing can be signed until the Secret has one."""


@dataclass(frozen=True)
class SigningKey:
    key: ECKey
    kid: str
    alg: str
    private: bool

    def public_jwk(self) -> dict:
        return {**self.key.as_dict(private=False), "kid": self.kid, "use": "sig",
                "alg": self.alg}


def _load(block: bytes) -> SigningKey:
    """One PEM block: a private key (PKCS#8 or SEC1) or a public key (SPKI)."""
    private = b"PRIVATE KEY" in block.split(b"\n", 1)[0]
    try:
        crypto = (serialization.load_pem_private_key(block, password=None) if private
                  else serialization.load_pem_public_key(block))
    except (ValueError, TypeError):
        raise ValueError("a PEM block is not a key without a password") from None
    if not isinstance(crypto, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        raise ValueError("a key is not an EC key (P-256 or P-384)")
    key = ECKey.import_key(crypto)
    crv = key.as_dict(private=False)["crv"]
    if crv not in _ALG:
        raise ValueError(f"an EC key is on curve {crv}, not P-256 or P-384")
    return SigningKey(key, key.thumbprint(), _ALG[crv], private)


def pem_blocks(data: bytes) -> list[bytes]:
    """The PEM blocks of a file, in order (the operator writes the Secret's files with it)."""
    return [m.group(0) for m in _PEM_BLOCK.finditer(data)]


def parse_keys(data: bytes) -> tuple[SigningKey, ...]:
    """Every key in a PEM file, in order; ValueError for a file with none or a bad one."""
    blocks = pem_blocks(data)
    if data.strip() and not blocks:
        raise ValueError("no PEM block")
    return tuple(_load(b) for b in blocks)


def generate_key_file(path: str) -> None:
    """A new P-256 private key in `path` (mode 0600), for a server started by hand."""
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


class SigningKeys:
    """The signing key and the published keys, from watched PEM files."""

    def __init__(self, paths: list[str]) -> None:
        self._files = WatchedFiles(paths, parse_keys, (), "event signing key")

    @property
    def generation(self) -> int:
        """Grows when any key changes: a SET signed before is signed again."""
        self._files.refresh()
        return self._files.generation

    def published(self) -> list[SigningKey]:
        seen, out = set(), []
        for keys in self._files.values:
            for k in keys:
                if k.kid not in seen:
                    seen.add(k.kid)
                    out.append(k)
        return out

    def signer(self) -> SigningKey | None:
        """The first key of the first file, if it is a private key."""
        first = next(iter(self._files.values), ())
        return first[0] if first and first[0].private else None

    def jwks(self) -> dict:
        return {"keys": [k.public_jwk() for k in self.published()]}

    def sign(self, payload: bytes) -> str:
        """A compact JWS of `payload` (the SET's claims as JSON), typed as a SET."""
        key = self.signer()
        if key is None:
            raise NoSigningKey("no event signing key is loaded (see the log for why)")
        return jws.serialize_compact({"alg": key.alg, "kid": key.kid, "typ": SET_TYPE},
                                     payload, key.key, algorithms=[key.alg])
