"""The bootstrap snapshot, the retention's gap and the signing key's rotation
(scim_server/events/routes.py, keys.py), over HTTP."""

from __future__ import annotations

import hashlib
import json
import os

import httpx
import jwt
import pytest
from conftest import new_group, new_user, wait_until
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .conftest import decode, start

RESYNC = "https://scim.sevenlakes.com/events/resync"


def snapshot_lines(srv) -> list[bytes]:
    r = srv.events.get("/events/snapshot")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-ndjson"
    return r.content.splitlines(keepends=True)


def test_a_snapshot_is_the_api_state_at_a_position_and_proves_itself(events_server):
    srv = events_server
    users = [new_user(srv.scim) for _ in range(3)]
    group = new_group(srv.scim, members=[{"value": users[0]["id"]}])
    [jti] = [j for j in srv.drain()][-1:]
    lines = snapshot_lines(srv)
    head, end = json.loads(lines[0]), json.loads(lines[-1])
    assert head["issuer"] == srv.issuer and head["position"] == jti.split(".")[1]
    body = [json.loads(line) for line in lines[1:-1]]
    expected = [srv.scim.get(f"/Users/{u['id']}").json() for u in users]
    for u in expected:
        u.pop("groups", None)  # membership travels on the groups
    assert body == [*expected, srv.scim.get(f"/Groups/{group['id']}").json()]
    # The trailer: counts, a digest of every line before it, signed with the stream's key.
    assert (end["end"], end["users"], end["groups"]) == (True, 3, 1)
    assert end["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    proof = decode_proof(end["signature"], srv)
    assert {k: end[k] for k in proof} == proof


def decode_proof(token: str, srv) -> dict:
    jwks = jwt.PyJWKSet.from_dict(httpx.get(srv.root + "/events/jwks.json").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return jwt.decode(token, key, algorithms=["ES256"], options={"verify_aud": False})


def test_a_receiver_behind_the_retention_is_told_to_resync(tmp_path):
    srv = start(tmp_path / "srv", ["--events-retention-count", "2"])
    try:
        for _ in range(4):
            new_user(srv.scim)
        # The retention runs at start and once a minute; a restart applies it now.
        srv.stop()
        srv.start()
        sets = srv.poll(returnImmediately=True).json()["sets"]
        jtis = list(sets)
        gap = decode(sets[jtis[0]], srv)
        assert gap["sub_id"]["format"] == "opaque" and RESYNC in gap["events"]
        assert gap["events"][RESYNC]["lost"] == 2 and gap["events"][RESYNC]["reason"] == \
            "retention"
        assert len(jtis) == 3  # the gap first, then the two events kept
        metrics = httpx.get(srv.root + "/metrics").text
        assert "scim_events_resync_required 1.0" in metrics
        srv.poll(ack=jtis, returnImmediately=True)
        assert "scim_events_resync_required 0.0" in httpx.get(srv.root + "/metrics").text
    finally:
        srv.stop()


def pem(key, private: bool) -> bytes:
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def replace_file(path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # as the kubelet swaps a Secret's files


@pytest.mark.parametrize("previous_as", ["public", "private"])
def test_a_rotated_signing_key_signs_from_then_on_and_both_verify(tmp_path, previous_as):
    old, new = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    key_file, previous_file = tmp_path / "signing-key.pem", tmp_path / "previous-keys.pem"
    key_file.write_bytes(pem(old, True))
    previous_file.write_bytes(b"")
    srv = start(tmp_path / "srv", ["--events-signing-key-file", str(key_file),
                                   "--events-signing-key-file", str(previous_file)])
    try:
        new_user(srv.scim)
        [before] = srv.poll(returnImmediately=True).json()["sets"].values()
        assert len(httpx.get(srv.root + "/events/jwks.json").json()["keys"]) == 1
        # The rotation: the new key signs, the old one stays published for the overlap.
        replace_file(previous_file, pem(old, previous_as == "private"))
        replace_file(key_file, pem(new, True))
        wait_until(lambda: len(httpx.get(srv.root + "/events/jwks.json").json()["keys"]) == 2,
                   what="both keys published")
        new_user(srv.scim)
        sets = srv.poll(returnImmediately=True).json()["sets"]
        kids = {jwt.get_unverified_header(t)["kid"] for t in sets.values()}
        assert len(kids) == 1 and jwt.get_unverified_header(before)["kid"] not in kids
        for token in (before, *sets.values()):
            decode(token, srv)  # both keys verify against the served JWKS
        # The overlap ends: the old key is no longer published.
        replace_file(previous_file, b"")
        wait_until(lambda: len(httpx.get(srv.root + "/events/jwks.json").json()["keys"]) == 1,
                   what="the old key withdrawn")
        served = {k["kid"] for k in httpx.get(srv.root + "/events/jwks.json").json()["keys"]}
        assert served == kids
    finally:
        srv.stop()
