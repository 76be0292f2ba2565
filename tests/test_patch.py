"""PATCH (RFC 7644 §3.5.2): the engine (scim_server.patch) as a pure function, then on users
over HTTP: paths, value filters, extensions, atomicity."""

import pytest
from conftest import ENTERPRISE, JOYN, new_user, patch

from scim_server.errors import ScimError
from scim_server.patch import apply_patch
from scim_server.schemas import GROUP_TYPE, USER_TYPE
from scim_server.storage import MemberChange


def ops(*operations):
    return {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": list(operations)}


def test_the_engine_returns_a_new_document_and_leaves_its_input_alone():
    doc = {"userName": "a", "emails": [{"value": "a@x", "type": "work"}]}
    new, changes = apply_patch(USER_TYPE, doc, ops(
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "b@x"},
        {"op": "replace", "value": {"active": "False"}}))  # Entra's spellings
    assert new == {"userName": "a", "emails": [{"value": "b@x", "type": "work"}],
                   "active": False}
    assert changes == [] and doc["emails"][0]["value"] == "a@x"


def test_a_failing_operation_names_itself_and_the_input_stays_untouched():
    doc = {"userName": "a", "title": "t"}
    with pytest.raises(ScimError) as e:
        apply_patch(USER_TYPE, doc, ops({"op": "remove", "path": "title"},
                                        {"op": "replace", "path": "nosuch", "value": 1}))
    assert e.value.scim_type == "invalidPath" and e.value.detail.startswith("Operation 2 ")
    assert doc == {"userName": "a", "title": "t"}


def test_member_operations_become_deltas_not_a_member_list():
    _, changes = apply_patch(GROUP_TYPE, {"displayName": "g"}, ops(
        {"op": "add", "path": "members", "value": [{"value": "u1"}, {"value": "u2"}]},
        {"op": "remove", "path": "members[value eq \"u3\"]"}))
    assert changes[0] == MemberChange("add", members=[{"value": "u1"}, {"value": "u2"}])
    assert changes[1].kind in ("remove", "remove_where")


@pytest.fixture
def user(client):
    return new_user(client, displayName="Before", name={"givenName": "Ann", "familyName": "Lee"},
                    emails=[{"type": "work", "value": "w@x.com", "primary": True},
                            {"type": "home", "value": "h@x.com"}],
                    addresses=[{"type": "home", "locality": "Oslo"}],
                    **{ENTERPRISE: {"department": "Ops"}})


def do(client, user, *ops, status=200):
    r = patch(client, f"/Users/{user['id']}", *ops)
    assert r.status_code == status, r.text
    return r.json()


def test_replace_simple_and_sub_attribute(client, user):
    body = do(client, user, {"op": "replace", "path": "displayName", "value": "After"},
              {"op": "Replace", "path": "name.familyName", "value": "Lam"})
    assert body["displayName"] == "After"
    assert body["name"] == {"givenName": "Ann", "familyName": "Lam"}
    assert body["meta"]["version"] != user["meta"]["version"]
    assert client.get(f"/Users/{user['id']}").json() == body


def test_add_on_absent_attribute_and_sub_attribute(client, user):
    body = do(client, user, {"op": "add", "path": "title", "value": "Lead"},
              {"op": "add", "path": "name.middleName", "value": "Q"})
    assert body["title"] == "Lead" and body["name"]["middleName"] == "Q"


def test_value_filter_path(client, user):
    body = do(client, user,
              {"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@x.com"})
    assert body["emails"] == [{"type": "work", "value": "new@x.com", "primary": True},
                              {"type": "home", "value": "h@x.com"}]


def test_add_on_filtered_path_with_no_match_creates_one_element(client, user):
    body = do(client, user,
              {"op": "add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main"},
              {"op": "add", "path": 'addresses[type eq "work"].locality', "value": "Bergen"},
              {"op": "replace", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+47"})
    assert body["addresses"] == [{"type": "home", "locality": "Oslo"},
                                 {"type": "work", "streetAddress": "1 Main", "locality": "Bergen"}]
    assert body["phoneNumbers"] == [{"type": "mobile", "value": "+47"}]


def test_extension_paths(client, user):
    body = do(client, user,
              {"op": "replace", "path": f"{ENTERPRISE}:department", "value": "Field"},
              {"op": "add", "path": f"{JOYN}:xid", "value": "X-9"},
              {"op": "add", "path": f"{ENTERPRISE}:manager.value", "value": "m-1"})
    assert body[ENTERPRISE] == {"department": "Field", "manager": {"value": "m-1"}}
    assert body[JOYN] == {"xid": "X-9"}
    assert JOYN in body["schemas"]


def test_pathless_add_and_replace(client, user):
    body = do(client, user, {"op": "add", "value": {"nickName": "Annie", "title": "Boss",
                                                    JOYN: {"joynFieldId": "F1"}}})
    assert body["nickName"] == "Annie" and body[JOYN] == {"joynFieldId": "F1"}
    body = do(client, user, {"op": "replace", "value": {
        "displayName": "Dotted", "name.givenName": "Anna", f"{ENTERPRISE}:department": "HQ",
        "active": False}})
    assert body["displayName"] == "Dotted" and body["name"]["givenName"] == "Anna"
    assert body[ENTERPRISE]["department"] == "HQ" and body["active"] is False


def test_add_to_multi_valued_appends_and_primary_moves(client, user):
    body = do(client, user, {"op": "add", "path": "emails",
                             "value": [{"type": "other", "value": "o@x.com", "primary": True}]})
    assert [e["value"] for e in body["emails"]] == ["w@x.com", "h@x.com", "o@x.com"]
    assert [e.get("primary") for e in body["emails"]] == [False, None, True]


def test_replace_whole_multi_valued(client, user):
    body = do(client, user, {"op": "replace", "path": "emails",
                             "value": [{"type": "work", "value": "only@x.com"}]})
    assert body["emails"] == [{"type": "work", "value": "only@x.com"}]
    found = client.get('/Users?filter=emails.value eq "only@x.com"').json()
    assert [u["id"] for u in found["Resources"]] == [user["id"]]
    stale = client.get("/Users", params={
        "filter": f'emails.value eq "w@x.com" and id eq "{user["id"]}"'}).json()
    assert stale["totalResults"] == 0


def test_remove_paths(client, user):
    body = do(client, user, {"op": "remove", "path": 'emails[type eq "home"]'},
              {"op": "remove", "path": "name.givenName"},
              {"op": "remove", "path": f"{ENTERPRISE}:department"},
              {"op": "remove", "path": "addresses"})
    assert body["emails"] == [{"type": "work", "value": "w@x.com", "primary": True}]
    assert body["name"] == {"familyName": "Lee"}
    assert ENTERPRISE not in body and "addresses" not in body
    assert body["schemas"] == ["urn:ietf:params:scim:schemas:core:2.0:User"]


def test_remove_sub_attribute_drops_emptied_element(client, user):
    body = do(client, user, {"op": "remove", "path": 'addresses[type eq "home"].locality'})
    assert "addresses" not in body


def test_remove_without_path_is_no_target(client, user):
    r = patch(client, f"/Users/{user['id']}", {"op": "remove"})
    assert r.status_code == 400 and r.json()["scimType"] == "noTarget"


@pytest.mark.parametrize("ops,scim_type", [
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "replace", "path": "nosuch", "value": 1}], "invalidPath"),
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "add", "path": "active", "value": "perhaps"}], "invalidValue"),
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "replace", "path": "id", "value": "new-id"}], "mutability"),
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "frobnicate", "path": "title", "value": "x"}], "invalidSyntax"),
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "replace", "path": 'emails[type eq "work"', "value": "x"}], "invalidPath"),
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "remove", "path": "userName"}], "invalidValue"),
    ([{"op": "replace", "path": "displayName", "value": "X"},
      {"op": "replace", "path": 'emails[value co "zzz"].type', "value": "x"}], "noTarget"),
])
def test_failed_patch_is_atomic(client, user, ops, scim_type):
    r = patch(client, f"/Users/{user['id']}", *ops)
    assert r.status_code == 400, r.text
    assert r.json()["scimType"] == scim_type
    after = client.get(f"/Users/{user['id']}").json()
    assert after == user  # nothing changed, not even meta.version


def test_patch_renaming_onto_taken_username_is_409_and_atomic(client, user):
    other = new_user(client)
    r = patch(client, f"/Users/{user['id']}",
              {"op": "replace", "path": "displayName", "value": "X"},
              {"op": "replace", "path": "userName", "value": other["userName"].upper()})
    assert r.status_code == 409
    assert client.get(f"/Users/{user['id']}").json() == user


def test_empty_operations_is_a_no_op(client, user):
    body = do(client, user)
    assert body["meta"]["version"] == user["meta"]["version"]


def test_patch_unknown_user_is_404(client):
    r = patch(client, "/Users/nope", {"op": "replace", "path": "title", "value": "x"})
    assert r.status_code == 404


def test_patch_if_match(client, user):
    r = patch(client, f"/Users/{user['id']}",
              {"op": "replace", "path": "title", "value": "x"}, headers={"If-Match": 'W/"0"'})
    assert r.status_code == 412
    r = patch(client, f"/Users/{user['id']}", {"op": "replace", "path": "title", "value": "x"},
              headers={"If-Match": user["meta"]["version"]})
    assert r.status_code == 200


def test_attribute_names_in_paths_are_case_insensitive(client, user):
    body = do(client, user, {"op": "Replace", "path": "NAME.GIVENNAME", "value": "Zed"},
              {"op": "REPLACE", "path": 'EMAILS[TYPE eq "work"].VALUE', "value": "z@x.com"},
              {"op": "add", "path": f"{ENTERPRISE.upper()}:DEPARTMENT", "value": "Up"})
    assert body["name"]["givenName"] == "Zed"
    assert body["emails"][0] == {"type": "work", "value": "z@x.com", "primary": True}
    assert body[ENTERPRISE]["department"] == "Up"
