"""The operator's Test Connection (joyn_operator.route) against a real HTTPS server on
127.0.0.1 standing in for the ingress controller: it is reached at its address with the Tenant
URL's host as SNI and Host, its certificate verified for that host, and what it answers becomes
the tenant's route problem, never with the token in it."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import http.server
import json
import ssl
import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joyn_operator.config import OperatorConfig
from joyn_operator.route import RouteChecker, Target, check_route

HOST = "acme.scim.example.com"
URL = f"https://{HOST}/scim/v2"
TOKEN = "s3cret-token-" + "x" * 30


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA and a server certificate for HOST that it signed, as files."""
    folder = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test CA")).issuer_name(_name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(HOST)).issuer_name(_name("test CA"))
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (folder / "ca.crt").write_bytes(ca.public_bytes(pem))
    (folder / "tls.crt").write_bytes(cert.public_bytes(pem))
    (folder / "tls.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder


class Edge:
    """An HTTPS server that records what reached it and answers `status`."""

    def __init__(self, pki) -> None:
        self.status = 200
        self.seen: list[dict] = []
        edge = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                edge.seen.append({"sni": self.request.sni, "host": self.headers["Host"],
                                  "path": urlsplit(self.path).path,
                                  "query": parse_qs(urlsplit(self.path).query),
                                  "authorization": self.headers["Authorization"]})
                body = json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:"
                                               "ListResponse"], "totalResults": 0,
                                   "Resources": []}).encode()
                self.send_response(edge.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pki / "tls.crt", pki / "tls.key")

        def remember_sni(sock, name, _ctx):
            sock.sni = name
        ctx.sni_callback = remember_sni
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def edge(pki):
    e = Edge(pki)
    yield e
    e.close()


def run(coro):
    return asyncio.run(coro)


async def check(pki, address: str, url: str = URL):
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=pki / "ca.crt"),
                                 timeout=5) as client:
        return await check_route(client, address, url, TOKEN)


def test_entras_test_connection_reaches_the_address_as_the_tenant_urls_host(pki, edge):
    result = run(check(pki, edge.address))
    assert result.ok, result.message
    [seen] = edge.seen
    assert (seen["sni"], seen["host"], seen["path"]) == (HOST, HOST, "/scim/v2/Users")
    assert seen["authorization"] == f"Bearer {TOKEN}"
    [flt] = seen["query"]["filter"]
    assert flt.startswith('userName eq "') and len(flt) == len('userName eq ""') + 36


def test_an_answer_other_than_200_is_reported_with_its_status_and_never_the_token(pki, edge):
    edge.status = 504
    result = run(check(pki, edge.address))
    assert not result.ok
    assert result.message == (
        f"Test Connection (GET {URL}/Users?filter=userName eq <random>) through the ingress "
        f"controller at {edge.address}: HTTP 504: the ingress controller's request to the "
        "server timed out (NetworkPolicy?)")
    assert TOKEN not in result.message
    # The same outcome, the same words: an unchanged result writes no status.
    assert run(check(pki, edge.address)) == result


def test_a_certificate_for_another_host_or_nothing_listening_fails(pki, edge):
    result = run(check(pki, edge.address, "https://other.scim.example.com/scim/v2"))
    assert not result.ok and "certificate verify failed" in result.message.lower()
    result = run(check(pki, "127.0.0.1:1"))
    assert not result.ok and "ConnectError" in result.message


class Secrets:
    """The operator's Kube client, imitated for the one read the checker makes (a token
    Secret): the checker's scheduling is what is under test here, not the API server."""

    def __init__(self, token: str) -> None:
        self.data = {"token": base64.b64encode(token.encode()).decode()}

    async def get(self, url: str) -> dict:
        assert url == "/api/v1/namespaces/ns/secrets/acme-scim-token"
        return {"data": self.data}


def test_the_checker_checks_ready_tenants_wakes_them_on_a_change_and_forgets_the_others(
        pki, edge):
    cfg = OperatorConfig(route_check_address=edge.address, route_check_ca_file=str(
        pki / "ca.crt"), route_check_seconds=0.2)
    target = Target(URL, "ns", "acme-scim-token", "token")
    key = ("ns", "acme")

    async def scenario():
        woken = asyncio.Queue()
        checker = RouteChecker(cfg, Secrets(TOKEN), woken.put)
        task = asyncio.create_task(checker.run())
        try:
            assert checker.problem(key, target)[0] == "RoutePending"
            assert await asyncio.wait_for(woken.get(), 5) == key
            assert checker.problem(key, target) is None
            edge.status = 502
            assert await asyncio.wait_for(woken.get(), 5) == key
            reason, message = checker.problem(key, target)
            assert reason == "RouteUnreachable" and "HTTP 502" in message
            assert checker.problem(key, None) is None  # not ready otherwise: not checked
            assert key not in checker.targets and key not in checker.results
        finally:
            task.cancel()

    run(scenario())
