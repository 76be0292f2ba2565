"""test-connection's checks that need no server (joyn_operator/ctl/probe.py): DNS, and the
checklist's wording and verdict. The checks against a server run through the real ingress
in tests/kube/test_ctl.py."""

from __future__ import annotations

from joyn_operator.ctl import probe


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
