"""Resource documents (scim_server.resources) as pure functions: what a POST or PUT body
becomes in storage, and what a stored resource renders as, with a projection."""

import pytest

from scim_server.errors import ScimError
from scim_server.resources import Projection, canonical_resource, render
from scim_server.schemas import ENTERPRISE_USER, GROUP, GROUP_TYPE, USER, USER_TYPE
from scim_server.storage import Stored

BASE = "https://scim.example.com/scim/v2"


def test_a_body_is_stored_in_schema_spelling_without_what_the_server_owns():
    doc = canonical_resource(USER_TYPE, {
        "schemas": [USER, ENTERPRISE_USER], "id": "chosen", "meta": {"version": "x"},
        "USERNAME": "a@x.com", "Active": "True", "nickName": None, "madeUp": 1,
        "groups": [{"value": "g"}], "password": "hunter2",
        ENTERPRISE_USER: {"Department": "Field", "manager": "m-1"},
        f"{ENTERPRISE_USER}:employeeNumber": "7",
        "urn:ietf:params:scim:schemas:extension:unknown:2.0:User": {"x": 1}})
    assert doc == {"userName": "a@x.com", "active": True,
                   ENTERPRISE_USER: {"department": "Field", "manager": {"value": "m-1"},
                                     "employeeNumber": "7"}}


@pytest.mark.parametrize("body,detail", [
    ({"displayName": "no user name"}, "'userName' is required"),
    ({"userName": "a", "active": "maybe"}, "must be a boolean"),
    ({"userName": "a", "emails": {"value": "a@x"}}, "must be a JSON array"),
    ({"userName": "a", "emails": [{"value": "1", "primary": True},
                                  {"value": "2", "primary": True}]}, "At most one"),
    ({"userName": "a\x00b"}, "U+0000"),
    ({"userName": 7}, "must be a string"),
])
def test_a_body_that_breaks_the_schema_is_400_saying_why(body, detail):
    with pytest.raises(ScimError) as e:
        canonical_resource(USER_TYPE, body)
    assert e.value.status == 400 and detail in e.value.detail


def stored(**doc):
    return Stored("u-1", doc, "2026-01-01T00:00:00.000000Z", "2026-01-02T00:00:00.000000Z", 3,
                  groups=[{"value": "g-1", "display": "Techs"}])


def test_a_stored_user_renders_with_meta_groups_and_its_extensions():
    out = render(USER_TYPE, stored(userName="a", externalId="e", **{
        ENTERPRISE_USER: {"department": "Field"}}), BASE)
    assert out == {
        "schemas": [USER, ENTERPRISE_USER], "id": "u-1", "externalId": "e", "userName": "a",
        "groups": [{"value": "g-1", "$ref": f"{BASE}/Groups/g-1", "display": "Techs",
                    "type": "direct"}],
        ENTERPRISE_USER: {"department": "Field"},
        "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00.000000Z",
                 "lastModified": "2026-01-02T00:00:00.000000Z",
                 "location": f"{BASE}/Users/u-1", "version": 'W/"3"'}}


def test_attributes_select_and_excluded_attributes_drop_but_id_is_always_there():
    res = stored(userName="a", title="t", emails=[{"value": "a@x", "type": "work"}])
    only = render(USER_TYPE, res, BASE, Projection.parse(USER_TYPE, "emails.value", None))
    assert only == {"schemas": [USER], "id": "u-1", "emails": [{"value": "a@x"}]}
    without = render(USER_TYPE, res, BASE,
                     Projection.parse(USER_TYPE, None, "title,meta,groups,emails.type"))
    assert without == {"schemas": [USER], "id": "u-1", "userName": "a",
                       "emails": [{"value": "a@x"}]}


def test_an_unknown_attribute_in_a_projection_selects_nothing():
    res = stored(userName="a")
    assert render(USER_TYPE, res, BASE, Projection.parse(USER_TYPE, "nosuch", None)) == \
        {"schemas": [USER], "id": "u-1"}
    p = Projection.parse(USER_TYPE, 'emails[type eq "work"]', None)  # Microsoft's collection
    assert p == Projection.parse(USER_TYPE, "emails", None)


def test_a_group_renders_its_members_with_references():
    g = Stored("g-1", {"displayName": "Techs"}, "c", "m", 1,
               members=[{"value": "u-1", "type": "User", "display": "Alice"},
                        {"value": "x", "type": None, "display": None}])
    out = render(GROUP_TYPE, g, BASE)
    assert out["schemas"] == [GROUP]
    assert out["members"] == [
        {"value": "u-1", "$ref": f"{BASE}/Users/u-1", "type": "User", "display": "Alice"},
        {"value": "x"}]
