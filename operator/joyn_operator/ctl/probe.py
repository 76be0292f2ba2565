"""`test-connection`: the Tenant URL checked from the caller's machine the way Entra calls it.

DNS, then TLS (the full chain against the system's trust store or --cacert, the host name,
days to expiry), then Entra's Test Connection request (a filter on a random GUID, which must
give 200, application/scim+json and an empty ListResponse), /ServiceProviderConfig, /Schemas
with the joynfsm extension, a wrong token (401 with a SCIM error body), and the latency. Each
failed check carries a hint saying what to fix and what the customer's Entra admin sees for
the same failure (entra.SYMPTOMS), so a rep can match the admin's screen to the check; `run`
returns them all, in order.
"""

from __future__ import annotations

import socket
import ssl
import statistics
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx

from scim_server.schemas import ERROR, JOYN_USER, LIST_RESPONSE

from .entra import SYMPTOMS

SCIM_JSON = "application/scim+json"
EXPIRY_WARNING_DAYS = 14  # cert-manager renews at two thirds of a 90-day certificate's life
SLOW_SECONDS = 2.0  # a Test Connection slower than this is worth a look (Entra waits longer)


@dataclass
class Check:
    name: str
    ok: bool | None  # None: a warning, not a failure
    detail: str
    hint: str = ""
    entra: str = ""  # a SYMPTOMS key: what Entra's admin sees for this failure

    @property
    def mark(self) -> str:
        return {True: "ok", False: "FAIL", None: "warn"}[self.ok]


@dataclass
class Target:
    url: str
    token: str
    address: str | None = None  # connect here instead of DNS (what curl --resolve does)
    cafile: str | None = None  # trust this CA file instead of the system's store
    timeout: float = 10.0
    tenant_hint: str = ""  # the tenant's Ready reason and message, for the hints

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)


def _ssl_context(cafile: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile)


def check_dns(t: Target) -> tuple[Check, str | None]:
    if t.address:
        return Check("DNS", True, f"{t.host} -> {t.address} (given by --address; DNS not asked)"), \
            t.address
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        return Check("DNS", False, f"{t.host} does not resolve ({e.strerror})",
                     "create the DNS record for the host, pointing at the ingress controller's "
                     "address (kubectl get ingress -n <namespace> shows it)", "unreachable"), None
    addresses = sorted({i[4][0] for i in infos})
    return Check("DNS", True, f"{t.host} -> {', '.join(addresses)}"), addresses[0]


def _describe(cert: dict) -> str:
    names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]
    issuer = dict(x[0] for x in cert.get("issuer", ()))
    return f"names {', '.join(names) or '(none)'}; issuer {issuer.get('commonName', '?')}"


def _presented(address: str, t: Target) -> str:
    """The names of the certificate the server presents, for the hint when they are not the
    host's: read again with the chain verified but not the name (ssl gives the details of
    verified certificates only)."""
    ctx = _ssl_context(t.cafile)
    ctx.check_hostname = False
    try:
        with socket.create_connection((address, t.port), timeout=t.timeout) as raw, \
                ctx.wrap_socket(raw, server_hostname=t.host) as s:
            return f" It presents a certificate with {_describe(s.getpeercert())}."
    except (OSError, ssl.SSLError):
        return ""


def check_tls(t: Target, address: str) -> Check:
    if urlsplit(t.url).scheme != "https":
        return Check("TLS", False, "the Tenant URL is not https", "Entra requires HTTPS: turn on "
                     "spec.ingress.tls, or terminate TLS in front of the ingress")
    try:
        with socket.create_connection((address, t.port), timeout=t.timeout) as raw, \
                _ssl_context(t.cafile).wrap_socket(raw, server_hostname=t.host) as s:
            cert = s.getpeercert()
    except ssl.SSLCertVerificationError as e:
        if e.verify_code == 62:  # X509_V_ERR_HOSTNAME_MISMATCH
            seen = _presented(address, t)
            return Check("TLS", False, f"the certificate does not name {t.host}.{seen}",
                         "the TLS Secret holds another host's certificate: check "
                         "spec.ingress.host and spec.ingress.tls", "unreachable")
        if e.verify_code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return Check("TLS", False, "the certificate has expired",
                         "renew it (kubectl get certificate -n <namespace>; cert-manager renews "
                         "before expiry unless it cannot reach its issuer)", "unreachable")
        return Check("TLS", False, f"the certificate chain is not trusted "
                     f"({e.verify_message})",
                     "Entra trusts only publicly trusted CAs, and the full chain must be "
                     "served: use a public issuer (e.g. Let's Encrypt) and a Secret with the "
                     "intermediates", "unreachable")
    except (OSError, ssl.SSLError) as e:
        return Check("TLS", False, f"no TLS connection to {address}:{t.port} ({e})",
                     "nothing answers on the Tenant URL's port: is the ingress controller "
                     "reachable from the internet, and the host's DNS record right?",
                     "unreachable")
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), UTC)
    days = (expires - datetime.now(UTC)).days
    detail = f"verified for {t.host}; {_describe(cert)}; expires in {days} days"
    if days < EXPIRY_WARNING_DAYS:
        return Check("TLS", None, detail, "the certificate expires soon: is cert-manager "
                     "renewing it? (kubectl get certificate -n <namespace>)")
    return Check("TLS", True, detail)


class _Client:
    """Requests to the Tenant URL through `address`, with the URL's host for TLS and Host, as
    `curl --resolve` does; latency kept per request."""

    def __init__(self, t: Target, address: str) -> None:
        parts = urlsplit(t.url)
        host = f"[{address}]" if ":" in address else address
        self.base = f"{parts.scheme}://{host}:{t.port}{parts.path.rstrip('/')}"
        self.host_header = parts.netloc
        self.host = t.host
        self.http = httpx.Client(timeout=t.timeout, verify=_ssl_context(t.cafile))
        self.seconds: list[float] = []

    def get(self, path: str, token: str, **params) -> httpx.Response:
        started = time.perf_counter()
        r = self.http.get(self.base + path, params=params, headers={
            "Host": self.host_header, "Authorization": f"Bearer {token}",
            "Accept": SCIM_JSON}, extensions={"sni_hostname": self.host})
        self.seconds.append(time.perf_counter() - started)
        return r


def _json(r: httpx.Response):
    try:
        return r.json()
    except ValueError:
        return None


def _http_hint(status: int, t: Target, what: str) -> str:
    if status == 401:
        return (f"the server refuses the {what}: if it was just rotated, the pod may not have "
                "it yet (a minute); otherwise check `kubectl joyn status`")
    if status == 404:
        return ("no route for this path: the ingress controller does not send it to the "
                "server (check the Ingress, and that the URL's path is the tenant's)"
                + t.tenant_hint)
    if status >= 500:
        return "the server is down or unreachable behind the ingress" + t.tenant_hint
    return "unexpected answer" + t.tenant_hint


def _symptom(status: int) -> str:
    return {401: "unauthorized", 403: "unauthorized", 404: "not_found"}.get(
        status, "server_error" if status >= 500 else "incompatible")


def check_test_connection(c: _Client, t: Target, what: str) -> Check:
    guid = uuid.uuid4()
    name = "Test Connection"
    try:
        r = c.get("/Users", t.token, filter=f'userName eq "{guid}"')
    except httpx.HTTPError as e:
        return Check(name, False, f"no answer ({e.__class__.__name__}: {e})",
                     "the ingress controller or the server does not answer" + t.tenant_hint,
                     "unreachable")
    body = _json(r)
    if r.status_code != 200:
        return Check(name, False, f"HTTP {r.status_code} with the {what}",
                     _http_hint(r.status_code, t, what), _symptom(r.status_code))
    problems = []
    if not r.headers.get("content-type", "").startswith(SCIM_JSON):
        problems.append(f"Content-Type {r.headers.get('content-type')!r}, not {SCIM_JSON}")
    if not isinstance(body, dict) or LIST_RESPONSE not in body.get("schemas", ()) \
            or body.get("totalResults") != 0 or body.get("Resources", []) != []:
        problems.append("not an empty ListResponse")
    if problems:
        return Check(name, False, "; ".join(problems), "something other than the Joyn SCIM "
                     "server answers at this URL (a proxy's error page?)" + t.tenant_hint,
                     "incompatible")
    return Check(name, True, f"200, {SCIM_JSON}, an empty ListResponse for a random GUID "
                             f"(the {what})")


def check_service_provider_config(c: _Client, t: Target) -> Check:
    r = c.get("/ServiceProviderConfig", t.token)
    body = _json(r)
    if r.status_code != 200 or not isinstance(body, dict):
        return Check("ServiceProviderConfig", False, f"HTTP {r.status_code}",
                     _http_hint(r.status_code, t, "token"))
    patch = (body.get("patch") or {}).get("supported")
    filter_ = (body.get("filter") or {}).get("supported")
    ok = patch is True and filter_ is True
    return Check("ServiceProviderConfig", ok, f"patch supported: {patch}, filter supported: "
                 f"{filter_}", "" if ok else "not the Joyn SCIM server's configuration")


def check_schemas(c: _Client, t: Target) -> Check:
    r = c.get("/Schemas", t.token)
    body = _json(r)
    ids = [s.get("id") for s in (body or {}).get("Resources", [])] if isinstance(body, dict) \
        else []
    if r.status_code != 200:
        return Check("Schemas", False, f"HTTP {r.status_code}", _http_hint(r.status_code, t,
                                                                            "token"))
    if JOYN_USER not in ids:
        return Check("Schemas", False, f"{JOYN_USER} is not listed",
                     "the server is not Joyn's, or an old version")
    return Check("Schemas", True, f"{len(ids)} schemas, the joynfsm extension among them")


def check_wrong_token(c: _Client) -> Check:
    r = c.get("/Users", f"wrong-{uuid.uuid4().hex}", filter='userName eq "x"')
    body = _json(r)
    scim_error = isinstance(body, dict) and ERROR in body.get("schemas", ())
    if r.status_code == 401 and scim_error:
        return Check("Wrong token", True, "401 with a SCIM error body")
    return Check("Wrong token", False, f"HTTP {r.status_code}"
                 + ("" if scim_error else ", not a SCIM error body"),
                 "the endpoint must refuse a wrong token with 401: something in front of the "
                 "server answers instead, or authentication is off")


def check_latency(c: _Client) -> Check:
    median = statistics.median(c.seconds)
    detail = f"median {median * 1000:.0f} ms over {len(c.seconds)} requests, " \
             f"slowest {max(c.seconds) * 1000:.0f} ms"
    if median > SLOW_SECONDS:
        return Check("Latency", None, detail, "slow: check the server's resources and the "
                     "path from the internet to the ingress")
    return Check("Latency", True, detail)


def run(t: Target, what: str = "current token") -> list[Check]:
    """Every check, in order; later checks are skipped once one they depend on fails."""
    dns, address = check_dns(t)
    checks = [dns]
    if address is None:
        return checks
    checks.append(check_tls(t, address))
    if checks[-1].ok is False:
        return checks
    c = _Client(t, address)
    try:
        checks.append(check_test_connection(c, t, what))
        if checks[-1].ok is False:
            return checks
        checks += [check_service_provider_config(c, t), check_schemas(c, t),
                   check_wrong_token(c), check_latency(c)]
    finally:
        c.http.close()
    return checks


def report(checks: list[Check]) -> str:
    lines = []
    for ch in checks:
        lines.append(f"[{ch.mark:>4}] {ch.name}: {ch.detail}")
        if ch.hint:
            lines.append(f"       fix: {ch.hint}")
        if ch.entra:
            lines.append(f"       in Entra: {SYMPTOMS[ch.entra].entra}")
    failed = sum(1 for ch in checks if ch.ok is False)
    lines.append("all checks passed" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)
