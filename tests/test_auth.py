"""Bearer authentication: missing, wrong and rotated tokens; the generated default token."""

import os
import re
import secrets
import stat

import httpx
import pytest
from conftest import write_token


def test_missing_token_is_401_with_scim_json(server):
    r = httpx.get(server.url + "/Users")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/scim+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "401"


@pytest.mark.parametrize("header", [
    "Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "Token x", "Bearer a b"])
def test_wrong_token_is_401_and_never_echoed(server, header):
    r = httpx.get(server.url + "/ServiceProviderConfig", headers={"Authorization": header})
    assert r.status_code == 401
    assert "wrong-token" not in r.text


def test_scheme_is_case_insensitive(server):
    r = httpx.get(server.url + "/Users?count=1",
                  headers={"Authorization": f"bearer {server.token}"})
    assert r.status_code == 200


def test_health_endpoints_need_no_token(server):
    assert httpx.get(server.root + "/healthz").status_code == 200
    assert httpx.get(server.root + "/readyz").status_code == 200


def test_token_files_are_reloaded_without_restart(make_server, tmp_path):
    current, previous = tmp_path / "token", tmp_path / "previous-token"
    first = write_token(current)
    srv = make_server(token_files=[current, previous])

    def status(token):
        return httpx.get(srv.url + "/Users?count=0",
                         headers={"Authorization": f"Bearer {token}"}).status_code

    def eventually(token, code):
        from conftest import wait_until
        wait_until(lambda: status(token) == code, what=f"token to answer {code}")

    assert status(first) == 200
    # Rotation: the old token becomes "previous", a new one becomes current.
    write_token(previous, first)
    second = write_token(current)
    eventually(second, 200)
    assert status(first) == 200  # both valid during the overlap
    # The overlap ends: the previous file goes away.
    os.remove(previous)
    eventually(first, 401)
    assert status(second) == 200
    assert srv.proc.poll() is None  # same process throughout
    log = srv.logs()
    assert first not in log and second not in log


def test_a_token_file_may_hold_one_token_a_line(make_server, tmp_path):
    # The operator keeps every previous token it promised in one Secret key, a token a line.
    current, previous = tmp_path / "token", tmp_path / "previous-token"
    now = write_token(current)
    older, old = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    previous.write_text(f"{older}\n{old}\n")
    srv = make_server(token_files=[current, previous])
    for token in (now, older, old):
        assert httpx.get(srv.url + "/Users?count=0",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    both = older + old  # the file's bytes are no token, each line is
    assert httpx.get(srv.url + "/Users?count=0",
                     headers={"Authorization": f"Bearer {both}"}).status_code == 401


def test_no_valid_token_means_every_request_is_401_and_not_ready(make_server, tmp_path):
    srv = make_server(token_files=[tmp_path / "absent"])
    assert httpx.get(srv.url + "/Users", headers={"Authorization": "Bearer x"}).status_code \
        == 401
    ready = httpx.get(srv.root + "/readyz")
    assert ready.status_code == 503 and "token" in ready.json()["problems"][0]


def test_embedded_default_generates_and_prints_token_once(make_server, tmp_path):
    srv = make_server()  # no token file given: <data dir>/token is generated
    token_path = srv.data_dir / "token"
    token = token_path.read_text().strip()
    assert len(token) >= 43  # 256 bits, base64url
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    out = srv.out_path.read_text()
    assert f"Tenant URL:   {srv.url}" in out
    assert out.count(token) == 1
    assert token not in srv.logs()
    r = httpx.get(srv.url + "/Users", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    srv.stop()
    srv.start()  # a restart reuses the token and does not print it again
    assert srv.out_path.read_text().count(token) == 1
    assert re.search(r"Secret Token", srv.out_path.read_text()).start() >= 0
    assert httpx.get(srv.url + "/Users", headers={"Authorization": f"Bearer {token}"}) \
        .status_code == 200
