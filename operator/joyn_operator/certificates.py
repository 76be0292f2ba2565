"""Whether the tenant's certificate lets Entra connect, as pure functions over what the
reconcile read: cert-manager's Certificate (and its failing CertificateRequest or issuer), or
the user's own TLS Secret.

Each returns None when the certificate is fine, else (reason, message) for IngressReady and
Ready. Messages name the object and the problem and never hold key material: of a Secret only
tls.crt (public) is parsed.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from .tokens import fmt

Problem = tuple[str, str] | None
# A CertificateRequest in these states will not be issued by waiting (cert-manager's reasons).
FAILED_REQUEST_REASONS = frozenset({"Failed", "Denied", "InvalidRequest"})


def _condition(obj: dict | None, type_: str) -> dict:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return {}


def _said(c: dict) -> str:
    """cert-manager's own words: "<reason>: <message>"."""
    return ": ".join(x for x in (c.get("reason"), c.get("message")) if x) or "no reason given"


def certificate_problem(name: str, issuer: str, certificate: dict | None,
                        requests: list[dict], issuer_obj: dict | None, *,
                        served: bool = True) -> Problem:
    """What keeps cert-manager's Certificate `name` (ingress-shim names it after the TLS
    Secret) from serving: not made yet, issuing, or failed (with cert-manager's reason and
    message, from the Certificate, its latest failing CertificateRequest, or an issuer that
    is not Ready). `served`: whether the cluster serves cert-manager's Certificate API."""
    if not served:
        return ("CertificatePending", f"The Ingress asks cert-manager ({issuer}) for Secret "
                f"{name}, but this cluster serves no certificates.cert-manager.io: install "
                "cert-manager, or name your own Secret in spec.ingress.tls.secretName")
    if certificate is None:
        return ("CertificatePending", f"Waiting for cert-manager to create Certificate {name} "
                f"for the Ingress ({issuer})")
    ready = _condition(certificate, "Ready")
    if ready.get("status") == "True":
        return None
    issuing = _condition(certificate, "Issuing")
    if issuing.get("status") == "False" and issuing.get("reason") == "Failed":
        return ("CertificateFailed", f"Certificate {name}: {_said(issuing)}")
    failed = [r for r in requests if _condition(r, "Ready").get("reason")
              in FAILED_REQUEST_REASONS or _condition(r, "Denied").get("status") == "True"]
    if failed:
        latest = max(failed, key=lambda r: r["metadata"].get("creationTimestamp") or "")
        cond = _condition(latest, "Denied") if _condition(latest, "Denied").get(
            "status") == "True" else _condition(latest, "Ready")
        return ("CertificateFailed", f"Certificate {name}: CertificateRequest "
                f"{latest['metadata']['name']}: {_said(cond)}")
    issuer_ready = _condition(issuer_obj, "Ready")
    if issuer_ready.get("status") == "False":  # none yet: cert-manager has not looked at it
        return ("CertificateFailed", f"Certificate {name}: {issuer} is not ready: "
                f"{_said(issuer_ready)}")
    return ("CertificatePending", f"Certificate {name}: {_said(ready) if ready else 'issuing'}")


def _host_matches(host: str, name: str) -> bool:
    """RFC 6125 as browsers and Entra apply it: a wildcard only as the whole left-most label,
    matching exactly one label."""
    host, name = host.lower().rstrip("."), name.lower().rstrip(".")
    if name.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == name[2:]
    return host == name


def tls_secret_problem(name: str, host: str, secret: dict | None, now: datetime) -> Problem:
    """What keeps the user's own TLS Secret `name` from serving `host`: missing, no readable
    certificate in tls.crt, a certificate that does not name the host (its DNS SANs), one not
    yet valid or expired."""
    if secret is None:
        return ("TLSSecretMissing", f"TLS Secret {name!r} does not exist in the namespace")
    raw = ((secret.get("data") or {}).get("tls.crt")) or ""
    try:
        pem = base64.b64decode(raw, validate=True)
        # The first certificate is the server's; the rest of the chain follows it.
        cert = x509.load_pem_x509_certificates(pem)[0]
    except (binascii.Error, ValueError, IndexError):
        return ("TLSCertificateInvalid", f"TLS Secret {name}: tls.crt holds no PEM certificate")
    try:
        sans = cert.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    if not any(_host_matches(host, san) for san in sans):
        return ("TLSCertificateInvalid", f"TLS Secret {name}: the certificate does not name "
                f"{host} (its DNS names: {', '.join(sans) or 'none'}); Entra refuses it")
    if now < cert.not_valid_before_utc:
        return ("TLSCertificateInvalid", f"TLS Secret {name}: the certificate is valid only "
                f"from {fmt(cert.not_valid_before_utc)}")
    if now >= cert.not_valid_after_utc:
        return ("TLSCertificateExpired", f"TLS Secret {name}: the certificate expired at "
                f"{fmt(cert.not_valid_after_utc)}; Entra refuses it")
    return None
