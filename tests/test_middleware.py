"""The middleware (scim_server.middleware) as ASGI callables, around a stand-in app: path
normalising, request ids, metrics labels, the 500 body, and bearer checks only under the
base path."""

import asyncio
import logging

import orjson
import pytest

from scim_server.auth import TokenStore
from scim_server.metrics import Metrics
from scim_server.middleware import (
    BearerAuthMiddleware,
    ObservabilityMiddleware,
    normalize_path,
    resource_label,
)

BASE = "/scim/v2"


@pytest.mark.parametrize("given,expected", [
    ("/scim/v2/Users", "/scim/v2/Users"),
    ("/scim/v2//users/", "/scim/v2/Users"),  # a Tenant URL typed with a trailing slash
    ("/scim/v2/serviceproviderconfig", "/scim/v2/ServiceProviderConfig"),
    ("/scim/v2/groups/AbC", "/scim/v2/Groups/AbC"),  # ids keep their case
    ("/scim/v2/unknown/x", "/scim/v2/unknown/x"),
    ("/healthz/", "/healthz"),
    ("/", "/"),
])
def test_paths_reach_their_endpoint_however_they_are_spelled(given, expected):
    assert normalize_path(given, BASE) == expected


def test_a_root_base_path_canonicalises_too():
    assert normalize_path("/users/1", "") == "/Users/1"
    assert resource_label("/Users/1", "") == "Users"
    assert resource_label("/healthz", "") == "healthz"


@pytest.mark.parametrize("path,label", [
    ("/scim/v2/Users/0190-abc", "Users"), ("/scim/v2/.search", ".search"),
    ("/scim/v2/alice@example.com", "other"), ("/metrics", "metrics"), ("/x/y", "other")])
def test_metrics_labels_never_hold_what_a_client_chose(path, label):
    assert resource_label(path, BASE) == label


def call(app, path="/scim/v2/Users", headers=()):
    """One request through `app`: (status, headers, body)."""
    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
             "headers": list(headers), "query_string": b"", "scheme": "http"}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


async def ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-path", scope["path"].encode())]})
    await send({"type": "http.response.body", "body": b"{}"})


async def broken(scope, receive, send):
    raise RuntimeError("a bug")


def test_a_request_id_is_kept_when_well_formed_else_made():
    app = ObservabilityMiddleware(ok, Metrics(), BASE)
    _, headers, _ = call(app, headers=[(b"x-request-id", b"entra-7f3a")])
    assert headers[b"x-request-id"] == b"entra-7f3a"
    _, headers, _ = call(app, headers=[(b"x-request-id", b"bad id\r\nx")])
    made = headers[b"x-request-id"]
    assert made != b"bad id\r\nx" and made.isalnum()
    assert call(app)[1][b"x-request-id"] != made


def test_the_app_sees_the_normalised_path():
    _, headers, _ = call(ObservabilityMiddleware(ok, Metrics(), BASE), path="/scim/v2/users/")
    assert headers[b"x-path"] == b"/scim/v2/Users"


def test_a_failing_handler_is_a_scim_500_naming_the_request_and_is_counted(caplog):
    metrics = Metrics()
    with caplog.at_level(logging.ERROR, "scim_server.access"):
        status, headers, body = call(ObservabilityMiddleware(broken, metrics, BASE))
    assert status == 500
    doc = orjson.loads(body)
    assert doc["status"] == "500" and headers[b"x-request-id"].decode() in doc["detail"]
    assert "a bug" not in doc["detail"]  # the client gets no traceback
    assert "a bug" in caplog.text  # the log does
    assert metrics.registry.get_sample_value(
        "scim_requests_total", {"method": "GET", "resource": "Users", "status": "500"}) == 1


def test_a_bearer_token_is_needed_under_the_base_path_only(tmp_path):
    (tmp_path / "token").write_text("s3cret-token\n")
    app = BearerAuthMiddleware(ok, TokenStore([str(tmp_path / "token")]), BASE)
    status, headers, body = call(app)
    assert status == 401 and headers[b"www-authenticate"] == b'Bearer realm="SCIM"'
    assert orjson.loads(body)["detail"].startswith("Missing bearer token")
    status, _, body = call(app, headers=[(b"authorization", b"Bearer wrong")])
    assert status == 401 and b"Invalid bearer token" in body
    assert call(app, headers=[(b"authorization", b"Bearer s3cret-token")])[0] == 200
    assert call(app, path="/scim/v2")[0] == 401
    assert call(app, path="/healthz")[0] == 200
    assert call(app, path="/scim/v2x")[0] == 200  # not under the base path: the app's 404


def test_probes_need_no_token_even_under_a_root_base_path(tmp_path):
    (tmp_path / "token").write_text("s3cret-token\n")
    app = BearerAuthMiddleware(ok, TokenStore([str(tmp_path / "token")]), "")
    assert call(app, path="/Users")[0] == 401
    assert [call(app, path=p)[0] for p in ("/healthz", "/readyz", "/metrics")] == [200] * 3
