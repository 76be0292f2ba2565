"""SET verification in the client (client/joyn_scim_events/verify.py): what it refuses, with
the RFC 8935 error code a receiver reports, and how it follows a key rotation."""

from __future__ import annotations

import json

import pytest
from joserfc import jws
from joserfc.jwk import ECKey, KeySet, OctKey
from joyn_scim_events import SetError, Verifier

ISSUER = "https://acme.scim.example.com/scim/v2"


def key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", {"kid": kid})


def jwks(*keys: ECKey) -> dict:
    return KeySet(list(keys)).as_dict(private=False)


def sign(k, claims: dict, **header) -> str:
    protected = {"alg": "ES256", "kid": k.kid, "typ": "secevent+jwt", **header}
    return jws.serialize_compact(protected, json.dumps(claims), k,
                                 algorithms=[protected["alg"]])


def claims(**over) -> dict:
    return {"iss": ISSUER, "aud": "joyn-fsm", "iat": 1, "jti": "s.1", "events": {"x": {}},
            **over}


class Fetches:
    def __init__(self, *keysets: dict) -> None:
        self.keysets = list(keysets)
        self.count = 0

    def __call__(self) -> dict:
        self.count += 1
        return self.keysets[min(self.count, len(self.keysets)) - 1]


def test_a_good_set_verifies_and_gives_its_claims():
    k = key("a")
    v = Verifier(ISSUER, "joyn-fsm", Fetches(jwks(k)))
    assert v.verify(sign(k, claims())) == claims()
    assert v.verify(sign(k, claims(aud=["other", "joyn-fsm"])))["jti"] == "s.1"


@pytest.mark.parametrize(("make", "err"), [
    (lambda k, o: sign(k, claims(), typ="JWT"), "invalid_request"),
    (lambda k, o: sign(o, claims(), kid="a"), "invalid_key"),  # a key posing as ours
    (lambda k, o: sign(k, claims(iss="https://evil.example.com")), "invalid_issuer"),
    (lambda k, o: sign(k, claims(aud="someone-else")), "invalid_audience"),
    (lambda k, o: sign(k, claims(jti=7)), "invalid_request"),
    (lambda k, o: "not.a.jws", "invalid_request"),
    (lambda k, o: jws.serialize_compact({"alg": "HS256", "kid": "a", "typ": "secevent+jwt"},
                                        json.dumps(claims()), OctKey.generate_key(256),
                                        algorithms=["HS256"]), "invalid_key"),
])
def test_what_is_refused_and_why(make, err):
    k, other = key("a"), key("b")
    v = Verifier(ISSUER, "joyn-fsm", Fetches(jwks(k)))
    with pytest.raises(SetError) as e:
        v.verify(make(k, other))
    assert e.value.err == err


def test_a_key_published_later_is_fetched_once_and_then_verifies():
    old, new = key("old"), key("new")
    fetches = Fetches(jwks(old), jwks(old, new))
    v = Verifier(ISSUER, "joyn-fsm", fetches, refresh_interval=0)
    assert v.verify(sign(old, claims()))
    assert v.verify(sign(new, claims())) and fetches.count == 2
    assert v.verify(sign(new, claims())) and fetches.count == 2


def test_unknown_keys_do_not_make_it_fetch_more_than_once_an_interval():
    k, stranger = key("a"), key("z")
    fetches = Fetches(jwks(k))
    v = Verifier(ISSUER, "joyn-fsm", fetches, refresh_interval=3600)
    v.verify(sign(k, claims()))
    for _ in range(5):
        with pytest.raises(SetError):
            v.verify(sign(stranger, claims()))
    assert fetches.count <= 2
