"""Health, readiness, metrics, logs, graceful shutdown, restart and crash persistence."""

import json
import re
import signal
import socket
import threading
import time

import httpx
from conftest import PATCH_OP, USER, new_group, new_user, scim_client, wait_until, write_token


def test_readyz_checks_the_database(server):
    r = httpx.get(server.root + "/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "problems": []}


def test_metrics_count_requests_by_method_resource_and_status(server, client):
    client.get("/Users/does-not-exist")
    text = httpx.get(server.root + "/metrics").text
    assert 'scim_requests_total{method="GET",resource="Users",status="404"}' in text
    assert "scim_request_duration_seconds_bucket" in text
    assert 'scim_resources{type="User"}' in text
    assert "scim_valid_tokens 1.0" in text
    assert "does-not-exist" not in text  # no ids in labels


def scrape(server, name: str) -> float:
    text = httpx.get(server.root + "/metrics").text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith(name + " ")))


def test_activity_gauges_show_the_last_request_and_the_401s_of_the_last_hour(server, client):
    refused = scrape(server, "scim_unauthorized_requests_last_hour")
    before = time.time()
    client.get("/Users?count=1")
    assert scrape(server, "scim_last_request_timestamp_seconds") >= before - 1
    for _ in range(3):
        httpx.get(server.url + "/Users", headers={"Authorization": "Bearer wrong"})
    assert scrape(server, "scim_unauthorized_requests_last_hour") == refused + 3
    last = scrape(server, "scim_last_request_timestamp_seconds")
    httpx.get(server.url + "/Users", headers={"Authorization": "Bearer wrong"})
    client.get("/ServiceProviderConfig")
    # neither a refused request nor discovery is provisioning activity
    assert scrape(server, "scim_last_request_timestamp_seconds") == last


def test_401_series_exist_before_the_first_401(server):
    # Prometheus counts no increase in a series born at 1; the chart's stale-token alert needs
    # the first 401s of a burst to count.
    text = httpx.get(server.root + "/metrics").text
    for method in ("GET", "POST", "PATCH", "DELETE"):
        assert f'scim_requests_total{{method="{method}",resource="Groups",status="401"}} 0.0' \
            in text


def test_json_logs_carry_the_request_id(server, client):
    r = client.get("/Users?count=1", headers={"X-Request-Id": "trace-abc-123"})
    assert r.headers["x-request-id"] == "trace-abc-123"
    generated = client.get("/Users?count=1").headers["x-request-id"]
    another = client.get("/Users?count=1").headers["x-request-id"]
    assert generated != another  # each request its own id, in the form a client may send
    assert all(re.fullmatch(r"[0-9a-f]{20,64}", i) for i in (generated, another))

    def logged():
        ids = set()
        for line in server.logs().splitlines():
            entry = json.loads(line)  # every line is one JSON object
            ids.add(entry.get("request_id"))
        return {"trace-abc-123", generated} <= ids

    wait_until(logged, what="access log lines")
    assert server.token not in server.logs()


def test_data_survives_restart(make_server, tmp_path):
    token = write_token(tmp_path / "token")
    srv = make_server(token_files=[tmp_path / "token"])
    with scim_client(srv, token) as c:
        user = new_user(c, title="Persisted")
        group = new_group(c, members=[{"value": user["id"]}])
    assert srv.stop() == 0
    srv.start()
    with scim_client(srv, token) as c:
        assert c.get(f"/Users/{user['id']}").json()["title"] == "Persisted"
        assert c.get(f"/Groups/{group['id']}").json()["members"][0]["value"] == user["id"]


def test_sigterm_finishes_the_request_in_flight(make_server, tmp_path):
    token = write_token(tmp_path / "token")
    srv = make_server(token_files=[tmp_path / "token"])
    body = json.dumps({"schemas": [USER], "userName": "in-flight@example.com"}).encode()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: Bearer " + token.encode() + b"\r\n"
                 b"Content-Type: application/scim+json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
    # A later request on another connection is answered: the first one's headers are read.
    assert httpx.get(srv.root + "/healthz").status_code == 200
    srv.proc.send_signal(signal.SIGTERM)
    sock.sendall(body[10:])
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
    sock.close()
    assert response.startswith(b"HTTP/1.1 201"), response[:200]
    assert srv.proc.wait(timeout=30) == 0


def test_kill_9_mid_patch_leaves_no_half_applied_patch(make_server, tmp_path):
    """PATCHes that set two attributes (and a membership) together, while the process is killed
    with SIGKILL: after restart each resource is exactly one PATCH's state, never a mix, and
    every acknowledged PATCH is there."""
    token = write_token(tmp_path / "token")
    srv = make_server(token_files=[tmp_path / "token"])
    with scim_client(srv, token) as c:
        user = new_user(c)
        members = [new_user(c)["id"] for _ in range(400)]
        group = new_group(c)
    acknowledged = []
    stop = threading.Event()

    def writer():
        with scim_client(srv, token) as c:
            n = 0
            while not stop.is_set():
                n += 1
                ops = [{"op": "replace", "path": "title", "value": str(n)},
                       {"op": "replace", "path": "nickName", "value": str(n)},
                       {"op": "replace", "path": "displayName", "value": str(n)}]
                gops = [{"op": "replace", "path": "displayName", "value": f"g{n}"},
                        {"op": "replace", "path": "members",
                         "value": [{"value": m} for m in members[: 100 + n % 300]]}]
                try:
                    r = c.patch(f"/Users/{user['id']}",
                                json={"schemas": [PATCH_OP], "Operations": ops})
                    g = c.patch(f"/Groups/{group['id']}",
                                json={"schemas": [PATCH_OP], "Operations": gops})
                except httpx.TransportError:
                    return
                if r.status_code == 200 and g.status_code == 204:
                    acknowledged.append(n)

    t = threading.Thread(target=writer)
    t.start()
    wait_until(lambda: len(acknowledged) >= 30, what="30 acknowledged PATCHes")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(timeout=10)
    stop.set()
    t.join(timeout=30)
    srv.start()
    with scim_client(srv, token) as c:
        u = c.get(f"/Users/{user['id']}").json()
        g = c.get(f"/Groups/{group['id']}").json()
    n = int(u["title"])
    assert u["nickName"] == u["displayName"] == str(n)
    assert n >= acknowledged[-1]
    gn = int(g["displayName"][1:])
    assert gn >= acknowledged[-1]
    assert len(g["members"]) == 100 + gn % 300
