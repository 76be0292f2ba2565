"""Input a careless or hostile client sends: each case a fuzzer once turned into a 500 now gets
a SCIM 400 naming what is wrong (RFC 7644 §3.12), or a correct answer, over HTTP on the real
server. The grammar-based fuzz test of the same surface is in test_fuzz.py."""

from __future__ import annotations

import pytest
from conftest import PATCH_OP, new_group, new_user, patch

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def scim_400(r, scim_type: str, *words: str) -> dict:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["schemas"] == [ERROR] and body["status"] == "400"
    assert body["scimType"] == scim_type, body
    for w in words:
        assert w in body["detail"], body
    return body


def listing(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def test_a_long_or_chain_is_answered(client):
    # 90 terms overflowed SQLite's parser stack when each `or` added a pair of parentheses.
    user = new_user(client)
    terms = [f'userName eq "nobody-{i}@example.com"' for i in range(99)]
    flt = " or ".join([*terms, f'userName eq "{user["userName"]}"'])
    assert [u["id"] for u in listing(client.get("/Users", params={"filter": flt}))
            ["Resources"]] == [user["id"]]


def test_more_comparisons_than_the_limit_is_400_naming_it(client):
    flt = " or ".join(f'userName eq "u{i}"' for i in range(101))
    scim_400(client.get("/Users", params={"filter": flt}), "invalidFilter", "100 comparisons")


def test_nesting_deeper_than_the_limit_is_400_naming_it(client):
    ten = "not (" * 10 + 'userName eq "x"' + ")" * 10
    listing(client.get("/Users", params={"filter": ten}))
    nineteen = "not (" * 19 + 'userName eq "x"' + ")" * 19
    scim_400(client.get("/Users", params={"filter": nineteen}), "invalidFilter",
             "10 levels")


@pytest.mark.parametrize("where", ["query", "search"])
def test_a_start_index_past_any_integer_is_an_empty_page(client, where):
    new_user(client)
    huge = "99999999999999999999"
    r = client.get("/Users", params={"startIndex": huge}) if where == "query" else \
        client.post("/Users/.search", json={"startIndex": int(huge[:18]) * 100})
    body = listing(r)
    assert body["Resources"] == [] and body["totalResults"] >= 1


@pytest.mark.parametrize("value", [1, 1.5, {}, [1], True])
@pytest.mark.parametrize("name", ["sortBy", "sortOrder", "filter", "attributes"])
def test_a_search_parameter_of_the_wrong_type_is_400(client, name, value):
    r = client.post("/Users/.search", json={name: value})
    scim_400(r, "invalidFilter" if name == "filter" else "invalidValue", name)
    scim_400(client.post("/.search", json={name: value}),
             "invalidFilter" if name == "filter" else "invalidValue", name)


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_date_outside_what_utc_can_hold_is_400(client, value):
    r = client.get("/Users", params={"filter": f'meta.created gt "{value}"'})
    scim_400(r, "invalidFilter", value, "0001-9999")


@pytest.mark.parametrize("number", ["9" * 4301, "9" * 21, "-9" + "0" * 19, "1e999"])
def test_a_number_beyond_64_bits_is_400(client, number):
    r = client.get("/Users", params={"filter": f"userName eq {number}"})
    scim_400(r, "invalidFilter", "position 13", "out of range")


def test_a_huge_number_after_a_syntax_error_is_400(client):
    # The message quoting the unexpected token once failed to serialise a 21-digit number.
    r = client.get("/Users", params={"filter": 'userName eq "x" 999999999999999999999'})
    scim_400(r, "invalidFilter", "position 17")


@pytest.mark.parametrize("value", [{"a": 1}, ["x"], 7, True])
def test_a_member_display_must_be_a_string(client, value):
    user = new_user(client)
    group = new_group(client, members=[{"value": user["id"], "display": "Before"}])
    r = patch(client, f"/Groups/{group['id']}",
              {"op": "replace", "path": f'members[value eq "{user["id"]}"].display',
               "value": value})
    scim_400(r, "invalidValue", "members.display", "string")
    members = client.get(f"/Groups/{group['id']}").json()["members"]
    assert [m["display"] for m in members] == ["Before"]  # nothing changed


def test_a_member_display_can_still_change(client):
    user = new_user(client)
    group = new_group(client, members=[{"value": user["id"], "display": "Before"}])
    r = patch(client, f"/Groups/{group['id']}",
              {"op": "replace", "path": f'members[value eq "{user["id"]}"].display',
               "value": "After"})
    assert r.status_code == 204, r.text
    assert client.get(f"/Groups/{group['id']}").json()["members"][0]["display"] == "After"


def nested_patch(levels: int) -> bytes:
    """A PatchOp body nesting exactly `levels` objects and arrays deep: the body, Operations,
    the operation, its value, then `name` and the objects inside its unknown sub-attributes."""
    inner = levels - 4
    deep = '{"a":' * inner + "1" + "}" * inner
    return (f'{{"schemas":["{PATCH_OP}"],"Operations":[{{"op":"add","value":{{"name":'
            f'{deep}}}}}]}}').encode()


def test_a_body_nested_to_the_limit_is_accepted(client):
    user = new_user(client)
    assert client.patch(f"/Users/{user['id']}", content=nested_patch(32)).status_code == 200


@pytest.mark.parametrize("levels", [33, 491, 1024])
def test_a_deeper_body_is_400_without_a_traceback(client, server, levels):
    user = new_user(client)
    before = server.log_path.stat().st_size
    r = client.patch(f"/Users/{user['id']}", content=nested_patch(levels))
    scim_400(r, "invalidSyntax", "32 levels")
    assert b"Traceback" not in server.log_path.read_bytes()[before:]


@pytest.mark.parametrize("attribute", ["displayName", "title", "name"])
def test_a_nul_character_in_a_value_is_400(client, attribute):
    value = {"givenName": "a\u0000b"} if attribute == "name" else "a\u0000b"
    r = client.post("/Users", json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                    "userName": "nul@example.com", attribute: value})
    scim_400(r, "invalidValue", "U+0000")
    user = new_user(client)
    r = patch(client, f"/Users/{user['id']}", {"op": "replace", "path": attribute,
                                               "value": value})
    scim_400(r, "invalidValue", "U+0000")


def test_a_compressed_body_is_415_and_stores_nothing(client):
    import gzip

    import orjson
    from conftest import USER
    body = gzip.compress(orjson.dumps({"schemas": [USER], "userName": "zipped@example.com"}))
    r = client.post("/Users", content=body, headers={"Content-Encoding": "gzip",
                                                     "Content-Type": "application/scim+json"})
    assert r.status_code == 415 and r.json()["schemas"] == [ERROR], r.text
    assert "gzip" in r.json()["detail"]
    found = client.get("/Users", params={"filter": 'userName eq "zipped@example.com"'})
    assert listing(found)["totalResults"] == 0
