"""The certificate's verdicts (joyn_operator.certificates): cert-manager's Certificate as its
conditions say, and a user's own TLS Secret as its certificate says (real X.509, made here)."""

import base64
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joyn_operator.certificates import certificate_problem, tls_secret_problem

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HOST = "acme.scim.example.com"
ISSUER = "ClusterIssuer letsencrypt"


def cond(type_, status, reason="", message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def obj(name, *conditions, uid="u1", created="2026-12-07T11:00:00Z"):
    return {"metadata": {"name": name, "uid": uid, "creationTimestamp": created},
            "status": {"conditions": list(conditions)}}


def test_a_ready_certificate_serves():
    cert = obj("acme-tls", cond("Ready", "True", "Ready", "up to date"))
    assert certificate_problem("acme-tls", ISSUER, cert, [], None) is None


def test_no_certificate_yet_or_no_cert_manager_is_pending_and_says_which():
    reason, message = certificate_problem("acme-tls", ISSUER, None, [], None)
    assert reason == "CertificatePending" and "acme-tls" in message and ISSUER in message
    reason, message = certificate_problem("acme-tls", ISSUER, None, [], None, served=False)
    assert reason == "CertificatePending" and "install cert-manager" in message


def test_issuing_is_pending_with_cert_managers_words():
    cert = obj("acme-tls", cond("Ready", "False", "DoesNotExist",
                                "Issuing certificate as Secret does not exist"),
               cond("Issuing", "True", "DoesNotExist", "Issuing"))
    ready_issuer = obj("letsencrypt", cond("Ready", "True", "ACMEAccountRegistered"))
    assert certificate_problem("acme-tls", ISSUER, cert, [], ready_issuer) == (
        "CertificatePending",
        "Certificate acme-tls: DoesNotExist: Issuing certificate as Secret does not exist")


def test_a_failed_issuance_a_failed_request_or_an_unready_issuer_fail():
    waiting = cond("Ready", "False", "DoesNotExist", "Issuing certificate")
    failed = obj("acme-tls", waiting, cond("Issuing", "False", "Failed",
                                           "The certificate request has failed to complete"))
    assert certificate_problem("acme-tls", ISSUER, failed, [], None) == (
        "CertificateFailed",
        "Certificate acme-tls: Failed: The certificate request has failed to complete")
    cert = obj("acme-tls", waiting)
    older = obj("acme-tls-1", cond("Ready", "False", "Failed", "old"), created="2026-12-07T10:00Z")
    newer = obj("acme-tls-2", cond("Ready", "False", "Failed", "signing failed: bad CSR"))
    reason, message = certificate_problem("acme-tls", ISSUER, cert, [older, newer], None)
    assert reason == "CertificateFailed" and message.endswith(
        "CertificateRequest acme-tls-2: Failed: signing failed: bad CSR")
    denied = obj("acme-tls-3", cond("Ready", "False", "Pending"),
                 cond("Denied", "True", "PolicyDenied", "host not allowed"))
    assert certificate_problem("acme-tls", ISSUER, cert, [denied], None)[1].endswith(
        "PolicyDenied: host not allowed")
    broken = obj("ca", cond("Ready", "False", "ErrGetKeyPair",
                            'Error getting keypair for CA issuer: secrets "ca" not found'))
    assert certificate_problem("acme-tls", ISSUER, cert, [], broken) == (
        "CertificateFailed", f"Certificate acme-tls: {ISSUER} is not ready: ErrGetKeyPair: "
        'Error getting keypair for CA issuer: secrets "ca" not found')


def secret(*names: str, not_before=NOW - timedelta(days=1), not_after=NOW + timedelta(days=60),
           san=True) -> dict:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    pem = builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return {"data": {"tls.crt": base64.b64encode(pem).decode(),
                     "tls.key": base64.b64encode(key_pem).decode()}}


def test_a_certificate_for_the_host_or_its_wildcard_serves():
    assert tls_secret_problem("own", HOST, secret(HOST), NOW) is None
    assert tls_secret_problem("own", HOST, secret("other.example.com", "*.SCIM.example.com"),
                              NOW) is None


def test_another_host_a_deeper_wildcard_or_no_san_is_refused_naming_the_secret():
    for names, san in (((f"x.{HOST}",), True), (("*.example.com",), True), ((HOST,), False)):
        reason, message = tls_secret_problem("own", HOST, secret(*names, san=san), NOW)
        assert reason == "TLSCertificateInvalid" and message.startswith("TLS Secret own:")
        assert f"does not name {HOST}" in message


def test_expired_not_yet_valid_missing_and_unreadable():
    reason, message = tls_secret_problem("own", HOST, secret(
        HOST, not_before=NOW - timedelta(days=90), not_after=NOW - timedelta(hours=1)), NOW)
    assert reason == "TLSCertificateExpired" and "2026-12-07T11:00:00Z" in message
    assert tls_secret_problem("own", HOST, secret(HOST, not_before=NOW + timedelta(hours=1)),
                              NOW)[0] == "TLSCertificateInvalid"
    assert tls_secret_problem("own", HOST, None, NOW) == (
        "TLSSecretMissing", "TLS Secret 'own' does not exist in the namespace")
    for data in ({}, {"tls.crt": "not base64!"}, {"tls.crt": base64.b64encode(b"junk").decode()}):
        assert tls_secret_problem("own", HOST, {"data": data}, NOW) == (
            "TLSCertificateInvalid", "TLS Secret own: tls.crt holds no PEM certificate")


def test_no_message_quotes_the_private_key():
    s = secret("elsewhere.example.com")
    key = base64.b64decode(s["data"]["tls.key"]).decode()
    _, message = tls_secret_problem("own", HOST, s, NOW)
    body = key.splitlines()[1]
    assert body not in message and "PRIVATE" not in message
