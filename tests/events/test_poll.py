"""RFC 8936 poll as the Joyn FSM application meets it (scim_server/events/routes.py, stream.py):
credentials apart from Entra's, signed SETs in order, acknowledgements, the long poll, and a
clear error that changes nothing for every bad request."""

from __future__ import annotations

import threading

import httpx
import pytest
from conftest import GROUP, new_group, new_user, patch, wait_until

from .conftest import decode

CREATE = "urn:ietf:params:scim:event:prov:create:full"
PATCH = "urn:ietf:params:scim:event:prov:patch:full"
DELETE = "urn:ietf:params:scim:event:prov:delete"
DEACTIVATE = "urn:ietf:params:scim:event:prov:deactivate"


def test_entra_token_and_receiver_credential_open_only_their_own_endpoints(events_server):
    srv = events_server
    entra = {"Authorization": f"Bearer {srv.token}"}
    receiver = {"Authorization": f"Bearer {srv.receiver_token}"}
    for path, method in (("/events", "POST"), ("/events/snapshot", "GET"),
                         ("/events/tail", "GET")):
        for headers in (entra, {}):
            r = httpx.request(method, srv.root + path, headers=headers, json={})
            assert r.status_code == 401, (path, r.text)
            assert r.json()["err"] == "authentication_failed"
            assert r.headers["www-authenticate"] == 'Bearer realm="events"'
            assert srv.token not in r.text
    r = httpx.get(srv.url + "/Users", headers=receiver)
    assert r.status_code == 401 and r.json()["status"] == "401"
    assert httpx.get(srv.url + "/Users", headers=entra).status_code == 200
    assert srv.poll(returnImmediately=True).status_code == 200
    assert httpx.get(srv.root + "/events/jwks.json").status_code == 200  # public keys: no token
    key = (srv.data_dir / "events-signing-key.pem").read_text()
    for secret in (srv.token, srv.receiver_token, key.splitlines()[1]):
        assert secret not in srv.logs() + httpx.get(srv.root + "/metrics").text


def test_every_change_arrives_signed_in_order_until_acknowledged(events_server):
    srv = events_server
    user = new_user(srv.scim, externalId="emp-1", active=True)
    group = new_group(srv.scim, members=[{"value": user["id"]}])
    r = patch(srv.scim, f"/Users/{user['id']}",
              {"op": "Replace", "path": "active", "value": "False"})  # Entra's disable
    assert r.status_code == 200
    assert srv.scim.delete(f"/Users/{user['id']}").status_code == 204

    first = srv.poll(returnImmediately=True).json()
    again = srv.poll(returnImmediately=True).json()
    assert first == again  # not acknowledged: the same SETs, the same bytes
    jtis = list(first["sets"])
    claims = [decode(first["sets"][j], srv) for j in jtis]
    assert [c["jti"] for c in claims] == jtis
    kinds = [sorted(c["events"]) for c in claims]
    assert kinds == [[CREATE], [CREATE], [DEACTIVATE, PATCH], [DELETE], [PATCH]]
    created = claims[0]
    assert created["sub_id"] == {"format": "scim", "uri": f"/Users/{user['id']}",
                                 "externalId": "emp-1"}
    assert created["events"][CREATE]["data"] == user  # the resource as the API returned it
    assert created["events"][CREATE]["version"] == user["meta"]["version"]
    disabled = claims[2]["events"][PATCH]
    assert disabled["data"]["Operations"] == [
        {"op": "Replace", "path": "active", "value": "False"}]  # the PatchOp as Entra sent it
    assert disabled["resource"]["active"] is False and disabled["version"] == 'W/"2"'
    # The user's deletion and its group losing it: one transaction, in that order.
    assert claims[3]["txn"] == claims[4]["txn"]
    left = claims[4]["events"][PATCH]
    assert claims[4]["sub_id"]["uri"] == f"/Groups/{group['id']}"
    assert left["memberChanges"] == {"remove": [user["id"]]} and left["version"] == 'W/"2"'
    assert "members" not in left["resource"]
    txns = [int(c["txn"]) for c in claims]
    assert txns == sorted(txns)

    r = srv.poll(ack=jtis[:2], returnImmediately=True)
    assert list(r.json()["sets"]) == jtis[2:]
    assert srv.poll(ack=jtis, returnImmediately=True).json() == {"sets": {}}
    # Acknowledging again (a poll whose answer was lost, retried) is fine.
    assert srv.poll(ack=jtis, returnImmediately=True).status_code == 200


def test_max_events_pages_the_backlog(events_server):
    srv = events_server
    for _ in range(5):
        new_user(srv.scim)
    r = srv.poll(maxEvents=2, returnImmediately=True).json()
    assert len(r["sets"]) == 2 and r["moreAvailable"] is True
    r = srv.poll(maxEvents=2, ack=list(r["sets"]), returnImmediately=True).json()
    assert len(r["sets"]) == 2 and r["moreAvailable"] is True
    r = srv.poll(maxEvents=5, ack=list(r["sets"]), returnImmediately=True).json()
    assert len(r["sets"]) == 1 and "moreAvailable" not in r
    # maxEvents 0: acknowledge only.
    assert srv.poll(maxEvents=0, ack=list(r["sets"]), returnImmediately=True).json() == \
        {"sets": {}}
    assert srv.poll(returnImmediately=True).json() == {"sets": {}}


def test_a_long_poll_answers_when_an_event_commits(events_server):
    srv = events_server
    srv.drain()
    answers = []
    poller = threading.Thread(target=lambda: answers.append(srv.poll()))  # 30 s wait
    poller.start()
    # The poll is waiting (nothing is there); a write ends it with that write's event.
    user = new_user(srv.scim)
    poller.join(timeout=20)
    assert not poller.is_alive(), "the long poll did not answer when the event committed"
    [token] = answers[0].json()["sets"].values()
    assert decode(token, srv)["sub_id"]["uri"] == f"/Users/{user['id']}"


@pytest.mark.parametrize(("body", "why"), [
    (b"{not json", "not JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"maxEvents": 1001}', "maxEvents must be an integer from 0 to 1000"),
    (b'{"maxEvents": -1}', "maxEvents"),
    (b'{"maxEvents": true}', "maxEvents"),
    (b'{"maxEvents": 1.5}', "maxEvents"),
    (b'{"returnImmediately": "yes"}', "returnImmediately"),
    (b'{"ack": "x"}', "ack must be an array"),
    (b'{"ack": [1]}', "ack must be an array"),
    (b'{"setErrs": {"x": "bad"}}', "setErrs"),
])
def test_a_malformed_poll_is_400_in_the_rfc_format(events_server, body, why):
    srv = events_server
    new_user(srv.scim)
    r = srv.events.post("/events", content=body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["err"] == "invalid_request" and why in r.json()["description"]
    assert len(srv.poll(returnImmediately=True).json()["sets"]) == 1  # nothing changed


def test_an_ack_naming_a_jti_never_issued_acknowledges_nothing(events_server):
    srv = events_server
    new_user(srv.scim)
    new_user(srv.scim)
    [real, other] = srv.poll(returnImmediately=True).json()["sets"]
    stream, seq = real.split(".")
    for bogus in (f"{stream}.999999", f"0000000000000000.{seq}", "garbage", f"{stream}.²"):
        r = srv.poll(ack=[real, bogus], returnImmediately=True)
        assert r.status_code == 400 and "Nothing was acknowledged" in r.json()["description"]
        assert list(srv.poll(returnImmediately=True).json()["sets"]) == [real, other]


def test_a_rejected_set_tells_the_receiver_to_resync(events_server):
    srv = events_server
    new_user(srv.scim)
    [jti] = srv.poll(returnImmediately=True).json()["sets"]
    r = srv.poll(setErrs={jti: {"err": "invalid_key", "description": "unknown kid"}},
                 returnImmediately=True).json()
    [(gap_jti, token)] = r["sets"].items()
    claims = decode(token, srv)
    resync = claims["events"]["https://scim.sevenlakes.com/events/resync"]
    assert resync["lost"] == 1 and "invalid_key" in resync["reason"]
    assert resync["snapshot"] == "/events/snapshot"
    assert srv.poll(ack=[gap_jti], returnImmediately=True).json() == {"sets": {}}


def test_the_service_provider_config_lists_the_events(events_server):
    spc = events_server.scim.get("/ServiceProviderConfig").json()
    assert spc["securityEvents"]["asyncRequest"] == "none"
    assert CREATE in spc["securityEvents"]["eventUris"]


def test_without_the_stream_there_are_no_event_endpoints(server, client):
    assert "securityEvents" not in client.get("/ServiceProviderConfig").json()
    r = httpx.post(server.root + "/events", json={})
    assert r.status_code == 404
    new_group(client, schemas=[GROUP])  # writes go on without an outbox


def test_readiness_says_what_the_stream_lacks_and_stays_ready_for_entra(tmp_path):
    from conftest import write_token

    from .conftest import start
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    srv = start(tmp_path / "srv", ["--events-signing-key-file", str(bad_key)])
    try:
        (srv.workdir / "receiver-token").write_text("")
        wait_until(lambda: httpx.get(srv.root + "/readyz").json().get("warnings") == [
            "no event signing key loaded", "no event receiver token configured"],
            what="readiness saying what the stream lacks")
        assert httpx.get(srv.root + "/readyz").status_code == 200
        assert new_user(srv.scim)  # Entra's provisioning goes on; its events wait
        write_token(srv.workdir / "receiver-token", srv.receiver_token)
        wait_until(lambda: srv.poll(returnImmediately=True).status_code == 503,
                   what="a poll told the key is missing")
        r = srv.poll(returnImmediately=True)
        assert "no event signing key" in r.json()["description"]
        assert r.headers["retry-after"] == "30"
        assert "event signing key file unusable" in srv.logs()
        bad_key.write_text(_new_key_pem())
        write_token(srv.workdir / "receiver-token", srv.receiver_token)
        wait_until(lambda: "warnings" not in httpx.get(srv.root + "/readyz").json(),
                   what="nothing lacking")
        assert len(srv.poll(returnImmediately=True).json()["sets"]) == 1
    finally:
        srv.stop()


def _new_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
