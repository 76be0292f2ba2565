"""Grammar-based fuzzing of everything a client controls, over HTTP on a real server of its own:
filters, query and .search parameters, PATCH bodies and resource bodies. Whatever the input,
the answer is never a 5xx, and every 4xx carries a SCIM error body (RFC 7644 §3.12).

The inputs are built from the server's own schema (real attribute names, sub-attributes, URNs)
so that most of them get past the first check, mixed with values chosen to hurt: NUL and other
control characters, numbers past 64 bits, dates at the ends of the calendar, deep nesting,
wrong JSON types. Examples are derandomized, so a run is repeatable (a failure is not luck);
JOYN_FUZZ_EXAMPLES raises the count per test for a longer hunt.
"""

from __future__ import annotations

import os

import orjson
import pytest
from conftest import GROUP, PATCH_OP, USER, own_server, scim_client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scim_server import schemas

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
FUZZ = settings(max_examples=int(os.environ.get("JOYN_FUZZ_EXAMPLES", "150")), deadline=None,
                derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _names() -> list[str]:
    out = ["id", "externalId", "meta.created", "meta.lastModified", "meta.version",
           "meta.resourceType", "members", "members.value", "members.display", "groups.display"]
    for s in schemas.ALL_SCHEMAS:
        for a in s.attributes:
            out += [a.name, f"{s.id}:{a.name}"]
            out += [f"{a.name}.{sub.name}" for sub in a.sub_attributes or ()]
    return out


NAMES = st.one_of(st.sampled_from(_names()), st.text(max_size=12))
OPS = st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "xx"])
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)  # includes U+0000
DATES = st.sampled_from(["2020-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
                         "0001-01-01T00:00:00+01:00", "2020-13-45T99:00:00Z", "now", ""])
NUMBERS = st.one_of(st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=False).map(repr), st.just("9" * 4400),
                    st.just("1e999")).map(str)
LITERALS = st.one_of(TEXT.map(lambda t: orjson.dumps(t).decode()), DATES.map(lambda d: f'"{d}"'),
                     NUMBERS, st.sampled_from(["true", "false", "null", "True"]))


def _compare() -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(NAMES, OPS, LITERALS).map(" ".join),
        NAMES.map(lambda n: f"{n} pr"),
        st.tuples(NAMES, OPS, LITERALS, st.sampled_from(["emails", "members", "phoneNumbers"]),
                  st.sampled_from(["value", "type", "display"])).map(
            lambda t: f'{t[3]}[{t[0]} {t[1]} {t[2]}].{t[4]} eq "x"'))


FILTERS = st.recursive(
    _compare(),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or", "AND", "Or"]), inner).map(" ".join),
        inner.map(lambda f: f"not ({f})"),
        inner.map(lambda f: f"({f})"),
        st.tuples(NAMES, inner).map(lambda t: f"{t[0]}[{t[1]}]")),
    max_leaves=12)
# Broken filters too: a valid one cut short, or with a stray character.
FILTERS = st.one_of(FILTERS, st.tuples(FILTERS, st.integers(0, 40)).map(lambda t: t[0][:t[1]]),
                    st.tuples(FILTERS, st.sampled_from('()[]"\\.'), st.integers(0, 40)).map(
                        lambda t: t[0][:t[2]] + t[1] + t[0][t[2]:]))

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**64 - 1),
              st.floats(allow_nan=False, allow_infinity=False), TEXT, DATES),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(NAMES, st.sampled_from(
                                ["value", "display", "type", "primary", "$ref"])),
                                inner, max_size=4)),
    max_leaves=10)
PARAM_VALUES = st.one_of(JSON, NUMBERS, TEXT)
# Paths that match what the fixture's user and group hold, so values reach storage.
MATCHING_PATHS = st.sampled_from(['members[value ne "x"].display', 'members[value ne "x"]',
                                  'emails[type eq "work"].value', 'emails[type eq "work"]',
                                  "name.givenName", f"{schemas.ENTERPRISE_USER}:manager"])
SUBS = st.sampled_from(["", ".value", ".display", ".type", ".x"])
PATCH_PATHS = st.one_of(MATCHING_PATHS, NAMES, st.tuples(NAMES, FILTERS, SUBS).map(
    lambda t: f"{t[0]}[{t[1]}]{t[2]}"))
OPERATION = st.fixed_dictionaries({"op": st.sampled_from(["add", "replace", "remove", "Add",
                                                          "Replace", "copy"])},
                                  optional={"path": st.one_of(PATCH_PATHS, JSON),
                                            "value": JSON})


@pytest.fixture(scope="module")
def fz(tmp_path_factory):
    srv = own_server(tmp_path_factory, "fuzz")
    with scim_client(srv, srv.token) as c:
        c.user = c.post("/Users", json={"schemas": [USER], "userName": "fuzz@example.com",
                                        "emails": [{"type": "work", "value": "f@example.com"}]}
                        ).json()
        c.group = c.post("/Groups", json={"schemas": [GROUP], "displayName": "Fuzzers",
                                          "members": [{"value": c.user["id"]}]}).json()
        c.server = srv
        yield c
    srv.stop()


def check(r) -> None:
    """No 5xx; a 4xx is a SCIM error whose `status` is the HTTP status (a 304 has no body)."""
    assert r.status_code < 500, (r.request.method, r.request.url, r.request.content[:300], r.text)
    if r.status_code >= 400:
        body = r.json()
        assert body["schemas"] == [ERROR] and body["status"] == str(r.status_code), r.text
        assert isinstance(body.get("detail"), str) and body["detail"], r.text
        if r.status_code == 400:
            assert body.get("scimType"), r.text


@FUZZ
@given(flt=FILTERS, endpoint=st.sampled_from(["/Users", "/Groups"]))
def test_filters(fz, flt, endpoint):
    check(fz.get(endpoint, params={"filter": flt}))


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["filter", "startIndex", "count", "sortBy",
                                               "sortOrder", "attributes", "excludedAttributes",
                                               "STARTINDEX", "x"]),
                              st.one_of(NAMES, NUMBERS, TEXT), max_size=4),
       endpoint=st.sampled_from(["/Users", "/Groups"]))
def test_query_parameters(fz, params, endpoint):
    check(fz.get(endpoint, params=params))


@FUZZ
@given(body=st.one_of(st.dictionaries(st.sampled_from(
    ["filter", "startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes",
     "schemas"]), st.one_of(PARAM_VALUES, FILTERS), max_size=4), JSON),
    endpoint=st.sampled_from(["/Users/.search", "/Groups/.search", "/.search"]))
def test_search_bodies(fz, body, endpoint):
    check(fz.post(endpoint, content=orjson.dumps(body)))


@FUZZ
@given(ops=st.one_of(st.lists(OPERATION, max_size=3), JSON),
       target=st.sampled_from(["user", "group"]))
def test_patch_bodies(fz, ops, target):
    rid = fz.user["id"] if target == "user" else fz.group["id"]
    body = {"schemas": [PATCH_OP], "Operations": ops}
    check(fz.patch(f"/{'Users' if target == 'user' else 'Groups'}/{rid}",
                   content=orjson.dumps(body)))


@FUZZ
@given(attrs=st.dictionaries(NAMES, JSON, max_size=5), kind=st.sampled_from(["user", "group"]),
       method=st.sampled_from(["POST", "PUT"]))
def test_resource_bodies(fz, attrs, kind, method):
    core = {"schemas": [USER, schemas.ENTERPRISE_USER], "userName": "someone@example.com"} \
        if kind == "user" else {"schemas": [GROUP], "displayName": "Someone"}
    endpoint = "/Users" if kind == "user" else "/Groups"
    body = {**core, **attrs}
    if method == "POST":
        r = fz.post(endpoint, content=orjson.dumps(body))
        check(r)
        if r.status_code == 201:
            check(fz.delete(f"{endpoint}/{r.json()['id']}"))
    else:
        rid = fz.user["id"] if kind == "user" else fz.group["id"]
        check(fz.put(f"{endpoint}/{rid}", content=orjson.dumps(body)))
