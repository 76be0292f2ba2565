"""test-connection's checks (joyn_operator/ctl/probe.py): DNS, the checklist's wording and
verdict, and against a real HTTPS server on loopback the certificate's expiry and what Entra
shows for each failure. The checks through the real ingress run in tests/kube/test_ctl.py."""

from __future__ import annotations

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from joyn_operator.ctl import probe

from scim_server.schemas import ERROR

ROOT = Path(__file__).resolve().parents[2]


def test_a_host_that_does_not_resolve_fails_with_the_fix():
    check, address = probe.check_dns(probe.Target("https://nowhere.invalid/scim/v2", "t"))
    assert address is None and check.ok is False
    assert "nowhere.invalid does not resolve" in check.detail and "DNS record" in check.hint


def test_an_address_given_replaces_dns_and_says_so():
    check, address = probe.check_dns(probe.Target("https://a.example/scim/v2", "t",
                                                  address="127.0.0.9"))
    assert address == "127.0.0.9" and check.ok and "--address" in check.detail


def test_a_plain_http_url_fails_tls_since_entra_requires_https():
    check = probe.check_tls(probe.Target("http://a.example/scim/v2", "t"), "127.0.0.1")
    assert check.ok is False and "HTTPS" in check.hint


def test_the_report_counts_failures_and_warnings_are_not_failures():
    checks = [probe.Check("DNS", True, "ok"), probe.Check("TLS", None, "soon", "renew"),
              probe.Check("Test Connection", False, "HTTP 401", "paste the token")]
    text = probe.report(checks)
    assert "[  ok] DNS: ok" in text and "[warn] TLS: soon" in text
    assert "[FAIL] Test Connection: HTTP 401\n       fix: paste the token" in text
    assert text.endswith("1 check(s) failed")


# -- against a real HTTPS server on loopback, with certificates from the harness's CA ----------

def _pki():
    sys.path.insert(0, str(ROOT / "hack" / "kube"))
    import pki
    return pki


@pytest.fixture
def server(tmp_path):
    """An HTTPS server for a.test on loopback that answers /Users with `status` (a SCIM error
    body), and a certificate that lives `days`."""
    pki = _pki()

    def start(status: int = 200, days: str = pki.DAYS):
        ca = pki.make_ca(tmp_path / f"pki-{days}", "ca", "test CA", days=days)
        cert, key = pki.issue(ca, tmp_path / f"pki-{days}", "a", "a.test", dns=("a.test",),
                              days=days)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = json.dumps({"schemas": [ERROR], "status": str(status)}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/scim+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return probe.Target(f"https://a.test:{httpd.server_port}/scim/v2", "the-token",
                            address="127.0.0.1", cafile=str(ca[0]), timeout=5)

    servers: list = []
    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_a_certificate_that_expires_within_two_weeks_is_a_warning(server):
    soon = server(days="1")
    check = probe.check_tls(soon, "127.0.0.1")
    assert check.ok is None and "expires in 0 days" in check.detail
    assert "expires soon" in check.hint
    fine = probe.check_tls(server(), "127.0.0.1")
    assert fine.ok is True and "expires in 89 days" in fine.detail


@pytest.mark.parametrize(("status", "entra_says"), [
    (401, 'Test Connection: "You appear to have entered invalid credentials"'),
    (404, "Response Status Code: NotFound (404)"),
    (502, "BadGateway"),
])
def test_a_failed_test_connection_names_what_entra_shows_the_admin(server, status, entra_says):
    checks = probe.run(server(status))
    assert [c.name for c in checks] == ["DNS", "TLS", "Test Connection"]
    assert checks[-1].ok is False and f"HTTP {status}" in checks[-1].detail
    text = probe.report(checks)
    assert entra_says in text.split("\n       in Entra: ")[1], text
    assert "the-token" not in text


def test_a_certificate_for_another_host_names_what_entra_shows(server):
    target = server()
    other = probe.Target(target.url.replace("a.test", "b.test"), "t", address="127.0.0.1",
                         cafile=target.cafile, timeout=5)
    check = probe.check_tls(other, "127.0.0.1")
    assert check.ok is False and "does not name b.test" in check.detail
    assert "no trust relationship" in probe.report([check])
