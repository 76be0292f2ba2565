"""Every request shape Microsoft Entra sends (../shared/docs/entra-scim-behaviour.md), one test
each, named after the shape, over HTTP. Both PATCH dialects work whatever the Tenant URL says."""

import httpx
import pytest
from conftest import (
    ENTERPRISE,
    GROUP,
    JOYN,
    PATCH_OP,
    USER,
    new_group,
    new_user,
    own_server,
    patch,
    scim_client,
    unique,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory, db_args):
    """A server of this module's own, on each backend in turn (conftest's db_args)."""
    srv = own_server(tmp_path_factory, "entra", db_args)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    with scim_client(server, server.token) as c:
        yield c


ADSCIM_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


def entra_user_body(**extra) -> dict:
    """U4: the create body of the Joyn FSM attribute mapping (no joynfsm URN in schemas)."""
    name = unique("adele") + "@contoso.com"
    return {
        "schemas": [USER, ENTERPRISE],
        "externalId": unique("ext"), "userName": name, "active": True,
        "displayName": "Adele Vance",
        "emails": [{"primary": True, "type": "work", "value": name}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "Adele Vance", "familyName": "Vance", "givenName": "Adele"},
        "phoneNumbers": [{"type": "mobile", "value": "+1 (425) 555-0109"}],
        "addresses": [{"type": "work", "formatted": "18/2111", "streetAddress": "1 Microsoft Way",
                       "locality": "Redmond", "region": "WA", "postalCode": "98052",
                       "country": "US"}],
        "roles": [],
        ENTERPRISE: {"department": "Retail"},
        JOYN: {"xid": "X-100", "joynFieldId": "F-7"},
        **extra,
    }


def create(client, **extra) -> dict:
    r = client.post("/Users", json=entra_user_body(**extra))
    assert r.status_code == 201, r.text
    return r.json()


def ok_patch(client, user, *ops) -> dict:
    r = patch(client, f"/Users/{user['id']}", *ops)
    assert r.status_code == 200, r.text
    return r.json()


# --- create and read ---------------------------------------------------------------------------

def test_create_user_with_custom_extension_missing_from_schemas(client):
    user = create(client)
    assert user[JOYN] == {"xid": "X-100", "joynFieldId": "F-7"}
    assert user["schemas"] == [USER, ENTERPRISE, JOYN]
    assert "roles" not in user  # `roles: []` means none


def test_create_with_null_attributes_treats_them_as_absent(client):
    user = create(client, addresses=None, phoneNumbers=None, title=None)
    assert "addresses" not in user and "phoneNumbers" not in user and "title" not in user


def test_active_string_true_false_returned_as_boolean(client):
    user = create(client, active="True")
    assert user["active"] is True
    body = ok_patch(client, user, {"op": "Replace", "path": "active", "value": "False"})
    assert body["active"] is False
    body = ok_patch(client, user, {"op": "replace", "path": "active", "value": True})
    assert body["active"] is True


def test_get_by_id_and_by_filter_return_identical_representations(client):
    user = create(client)
    by_id = client.get(f"/Users/{user['id']}").json()
    by_filter = client.get("/Users", params={
        "filter": f'userName eq "{user["userName"]}"'}).json()["Resources"][0]
    assert by_id == by_filter == user


def test_custom_attribute_sent_as_number_round_trips(client):
    user = create(client, **{JOYN: {"xid": 4711}})
    assert user[JOYN] == {"xid": 4711}
    body = ok_patch(client, user, {"op": "replace", "path": f"{JOYN}:joynFieldId", "value": 12})
    assert body[JOYN] == {"xid": 4711, "joynFieldId": 12}


# --- PATCH, per-attribute dialect --------------------------------------------------------------

def test_capitalised_ops_add_replace_remove(client):
    user = create(client)
    body = ok_patch(client, user, {"op": "Add", "path": "nickName", "value": "Adi"},
                    {"op": "Replace", "path": "displayName", "value": "A. Vance"},
                    {"op": "Remove", "path": "title"})
    assert body["nickName"] == "Adi" and body["displayName"] == "A. Vance"


def test_u5_replace_work_email_and_family_name(client):
    user = create(client)
    body = ok_patch(client, user,
                    {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "n@x.com"},
                    {"op": "Replace", "path": "name.familyName", "value": "New"})
    assert body["emails"] == [{"primary": True, "type": "work", "value": "n@x.com"}]
    assert body["name"]["familyName"] == "New"


def test_add_on_filtered_path_with_no_match_creates_the_element(client):
    user = new_user(client)
    body = ok_patch(client, user,
                    {"op": "Add", "path": 'emails[type eq "work"].value', "value": "w@x.com"},
                    {"op": "Replace", "path": 'phoneNumbers[type eq "mobile"].value',
                     "value": "+47 1"})
    assert body["emails"] == [{"type": "work", "value": "w@x.com"}]
    assert body["phoneNumbers"] == [{"type": "mobile", "value": "+47 1"}]


def test_per_field_address_ops_build_one_work_address_and_leave_home_alone(client):
    user = new_user(client, addresses=[{"type": "home", "locality": "Oslo"}])
    ops = [{"op": "Add", "path": f'addresses[type eq "work"].{k}', "value": v} for k, v in
           [("streetAddress", "Street"), ("locality", "Locality"), ("region", "Region"),
            ("postalCode", "PostalCode"), ("country", "Country")]]
    body = ok_patch(client, user, *ops)
    assert body["addresses"] == [
        {"type": "home", "locality": "Oslo"},
        {"type": "work", "streetAddress": "Street", "locality": "Locality", "region": "Region",
         "postalCode": "PostalCode", "country": "Country"}]
    body = ok_patch(client, user, {"op": "Replace", "path": 'addresses[type eq "Work"].Locality',
                                   "value": "Bergen"})
    assert body["addresses"][1]["locality"] == "Bergen" and len(body["addresses"]) == 2


def test_extension_path_split_at_last_colon_and_legacy_dot_form(client):
    user = create(client)
    body = ok_patch(client, user,
                    {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Field"},
                    {"op": "Replace", "path": f"{ENTERPRISE}.employeeNumber", "value": "42"},
                    {"op": "Replace", "path": f"{JOYN}:xid", "value": "X-2"})
    assert body[ENTERPRISE] == {"department": "Field", "employeeNumber": "42"}
    assert body[JOYN]["xid"] == "X-2"


def test_empty_operations_is_a_no_op(client):
    user = create(client)
    r = client.patch(f"/Users/{user['id']}", json={"Operations": [], "schemas": [PATCH_OP]})
    assert r.status_code == 200 and r.json() == user


def test_operations_before_schemas_and_extra_fields_ignored(client):
    user = create(client)
    r = client.patch(f"/Users/{user['id']}", json={
        "Operations": [{"op": "Replace", "path": "title", "value": "T", "name": "setTitle"}],
        "id": user["id"], "schemas": [PATCH_OP]})
    assert r.status_code == 200 and r.json()["title"] == "T"


# --- PATCH, path-less dialect (aadOptscim062020 / PatchBodyFormat) -----------------------------

def test_pathless_replace_with_attribute_path_keys(client):
    user = create(client)
    body = ok_patch(client, user,
                    {"op": "replace", "path": 'emails[type eq "work"].value', "value": "b@x.com"},
                    {"op": "replace", "value": {
                        "displayName": "Bjfe", "name.givenName": "Kkom",
                        "name.familyName": "Unua",
                        f"{ENTERPRISE}:employeeNumber": "Aklq",
                        f"{JOYN}:xid": "X-9", f"{JOYN}:joynFieldId": "F-9",
                        "active": False}})
    assert body["displayName"] == "Bjfe"
    assert body["name"] == {"formatted": "Adele Vance", "familyName": "Unua", "givenName": "Kkom"}
    assert body[ENTERPRISE] == {"department": "Retail", "employeeNumber": "Aklq"}
    assert body[JOYN] == {"xid": "X-9", "joynFieldId": "F-9"}
    assert body["emails"][0]["value"] == "b@x.com" and body["active"] is False


def test_okta_pathless_active_false(client):
    user = create(client)
    assert ok_patch(client, user, {"op": "replace", "value": {"active": False}})["active"] is False


# --- clearing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("empty", ["", None])
def test_replace_with_empty_or_null_clears(client, empty):
    user = create(client)
    body = ok_patch(client, user,
                    {"op": "replace", "path": 'addresses[type eq "work"].locality',
                     "value": empty},
                    {"op": "replace", "path": f"{ENTERPRISE}:department", "value": empty},
                    {"op": "replace", "path": f"{JOYN}:xid", "value": empty},
                    {"op": "replace", "path": "name.givenName", "value": empty})
    assert "locality" not in body["addresses"][0]
    assert ENTERPRISE not in body
    assert body[JOYN] == {"joynFieldId": "F-7"}
    assert "givenName" not in body["name"]


def test_batched_pathless_clear(client):
    user = create(client)
    body = ok_patch(client, user, {"op": "replace", "value": {
        "name.givenName": "", f"{ENTERPRISE}:department": ""}})
    assert "givenName" not in body["name"] and ENTERPRISE not in body


def test_clearing_every_field_of_an_address_drops_it(client):
    user = new_user(client, addresses=[{"type": "work", "locality": "Oslo", "country": "NO"}])
    body = ok_patch(client, user,
                    {"op": "replace", "path": 'addresses[type eq "work"].locality', "value": ""},
                    {"op": "replace", "path": 'addresses[type eq "work"].country', "value": None})
    assert "addresses" not in body


def test_remove_with_value_on_single_valued_clears_only_if_it_matches(client):
    user = create(client)
    body = ok_patch(client, user, {"op": "Remove", "path": "displayName", "value": "someone"})
    assert body["displayName"] == "Adele Vance"
    body = ok_patch(client, user, {"op": "Remove", "path": "displayName",
                                   "value": "ADELE VANCE"})
    assert "displayName" not in body
    body = ok_patch(client, user, {"op": "Remove", "path": 'emails[type eq "work"].value',
                                   "value": user["userName"]})
    assert "emails" not in body


# --- manager and roles -------------------------------------------------------------------------

def test_manager_as_reference_list_string_and_removal(client, server):
    boss, user = create(client), create(client)
    ref = f"{server.url}/Users/{boss['id']}"
    body = ok_patch(client, user, {"op": "Add", "path": "manager",
                                   "value": [{"$ref": ref, "value": boss["id"]}]})
    assert body[ENTERPRISE]["manager"] == {"$ref": ref, "value": boss["id"]}
    body = ok_patch(client, user, {"op": "Replace", "path": f"{ENTERPRISE}:manager",
                                   "value": boss["id"]})
    assert body[ENTERPRISE]["manager"] == {"value": boss["id"]}
    found = client.get("/Users", params={
        "filter": f'id eq "{user["id"]}" and manager eq "{boss["id"]}"',
        "attributes": "id"}).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user["id"]
    body = ok_patch(client, user, {"op": "remove", "path": 'manager[value eq "someone-else"]'})
    assert "manager" in body[ENTERPRISE]
    body = ok_patch(client, user, {"op": "remove", "path": f'manager[value eq "{boss["id"]}"]'})
    assert "manager" not in body[ENTERPRISE]


def test_roles_with_json_inside_strings(client):
    user = create(client)
    role = '{"id":"6a1c","value":"Admin","displayName":"Admin"}'
    body = ok_patch(client, user, {"op": "Add", "path": "roles", "value": [{"value": role}]})
    assert body["roles"] == [{"value": role}]


# --- groups ------------------------------------------------------------------------------------

def test_group_create_with_microsoft_schema_urn_then_members_in_bulk(client):
    name = unique("Field Techs")
    r = client.post("/Groups", json={"schemas": [GROUP, ADSCIM_GROUP], "externalId": unique(),
                                     "displayName": name, "meta": {"resourceType": "Group"}})
    assert r.status_code == 201 and r.json()["members"] == []
    gid = r.json()["id"]
    users = [new_user(client)["id"] for _ in range(3)]
    r = patch(client, f"/Groups/{gid}", {"op": "Add", "path": "members",
                                         "value": [{"$ref": None, "value": u} for u in users]})
    assert r.status_code == 204
    assert {m["value"] for m in client.get(f"/Groups/{gid}").json()["members"]} == set(users)


def test_group_remove_members_by_value_list_removes_only_those(client):
    users = [new_user(client)["id"] for _ in range(3)]
    g = new_group(client, members=[{"value": u} for u in users])
    r = patch(client, f"/Groups/{g['id']}", {"op": "Remove", "path": "members",
                                             "value": [{"$ref": None, "value": users[0]}]})
    assert r.status_code == 204
    left = {m["value"] for m in client.get(f"/Groups/{g['id']}").json()["members"]}
    assert left == set(users[1:])


def test_group_remove_member_flag_form_and_idempotence(client):
    users = [new_user(client)["id"] for _ in range(2)]
    g = new_group(client, members=[{"value": u} for u in users])
    url = f"/Groups/{g['id']}"
    for _ in range(2):  # the second remove of an absent member is a success too
        r = patch(client, url, {"op": "remove", "path": f'members[value eq "{users[0]}"]'})
        assert r.status_code == 204
    r = patch(client, url, {"op": "Add", "path": "members", "value": [{"value": users[1]}]})
    assert r.status_code == 204  # re-adding an existing member
    assert [m["value"] for m in client.get(url).json()["members"]] == [users[1]]
    assert patch(client, url, {"op": "Remove", "path": "members"}).status_code == 204
    assert client.get(url).json()["members"] == []


def test_group_rename_answers_204(client):
    g = new_group(client)
    r = patch(client, f"/Groups/{g['id']}",
              {"op": "Replace", "path": "displayName", "value": unique("renamed")})
    assert r.status_code == 204 and r.content == b""


def test_group_match_query_excludes_members(client):
    g = new_group(client, members=[{"value": new_user(client)["id"]}])
    r = client.get("/Groups", params={"excludedAttributes": "members",
                                      "filter": f'displayName eq "{g["displayName"]}"'})
    assert r.status_code == 200
    assert [("members" in x) for x in r.json()["Resources"]] == [False]


# --- queries and transport ---------------------------------------------------------------------

def test_test_connection_filter_on_random_guid(client):
    r = client.get("/Users?filter=externalId+eq+%229edf3db5-1d6f-4c5e-8c4b-2f0b5e1a7c3d%22")
    assert r.status_code == 200
    assert r.json()["totalResults"] == 0 and r.json()["Resources"] == []


def test_filter_with_quotes_parentheses_and_special_characters(client):
    name = "LACreateGroup-(1a2b3c4d) \"quoted\" \\ back"
    g = new_group(client, displayName=name)
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    r = client.get("/Groups", params={"filter": f'displayName eq "{escaped}"'})
    assert [x["id"] for x in r.json()["Resources"]] == [g["id"]]


def test_tenant_url_flag_and_adscimversion_header_are_tolerated(server, client):
    user = create(client)
    r = httpx.get(f"{server.url}/Users?aadOptscim062020&filter=userName+eq+"
                  f"%22{user['userName']}%22",
                  headers={"Authorization": f"Bearer {server.token}", "ADSCIMVersion": "6.0"})
    assert r.status_code == 200 and r.json()["totalResults"] == 1


def test_tenant_url_with_trailing_slash_still_reaches_users(server):
    r = httpx.get(f"{server.url}//users/", headers={"Authorization": f"Bearer {server.token}"},
                  params={"count": 1})
    assert r.status_code == 200


def test_error_status_is_a_string_holding_the_code(client):
    r = client.post("/Users", json={"schemas": [USER]})
    assert r.status_code == 400 and r.json()["status"] == "400" and r.json()["detail"]


def test_delete_of_an_unknown_user_is_404(client):
    assert client.delete("/Users/9edf3db5-0000-4000-8000-000000000000").status_code == 404


def test_a_burst_of_requests_is_never_rate_limited(client):
    statuses = {client.get("/Users?filter=userName+eq+%22nobody%22").status_code
                for _ in range(100)}
    assert statuses == {200}
