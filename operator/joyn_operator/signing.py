"""The event stream's signing keys as PEM text, for the signing-key Secret: a new EC P-256
private key (ES256, what the server signs with by default), its public half, and the PEM
blocks of a file. The `cryptography` library does the work (joserfc, the server's JOSE
library, is built on it); nothing here is hand-written crypto.

The server reads the Secret's files (scim_server/events/keys.py): the first key of
signing-key.pem signs, and every key of both files is published in the JWKS.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from scim_server.events.keys import pem_blocks

_CURVES = ("secp256r1", "secp384r1")  # what the server signs with: ES256, ES384


def new_private_key() -> str:
    """A new P-256 private key, PKCS#8 PEM, unencrypted (the Secret is its protection)."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()


def _private(pem: str) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVES:
        return key
    return None


def is_private_key(pem: str) -> bool:
    """Whether `pem` holds an EC private key the server can sign with (a hand edit may have
    left anything there)."""
    return _private(pem) is not None


def public_pem(private_pem: str) -> str:
    """The public half of an EC private key, SPKI PEM: all a receiver verifies with, and all
    that is kept of a key after a rotation."""
    key = _private(private_pem)
    if key is None:
        raise ValueError("not an EC private key")
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def clean_pem(text: str) -> str:
    """PEM text as the Secret keeps it: no surrounding blank space, one final line break."""
    return text.strip() + "\n" if text.strip() else ""


def split_pem(text: str) -> list[str]:
    """The PEM blocks of a file, each ending with a line break."""
    return [block.decode() + "\n" for block in pem_blocks(text.encode())]
