"""Groups and membership, over HTTP."""

from conftest import GROUP, new_group, new_user, patch, unique


def members_of(client, gid):
    return {m["value"] for m in client.get(f"/Groups/{gid}").json().get("members", [])}


def test_create_group_ignores_unknown_schema_urns_and_starts_empty(client):
    name = unique("Field Techs")
    r = client.post("/Groups", json={
        "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
        "externalId": "e-1", "displayName": name, "meta": {"resourceType": "Group"}})
    assert r.status_code == 201
    body = r.json()
    assert body["schemas"] == [GROUP]
    assert body["members"] == [] and body["displayName"] == name


def test_group_display_name_is_unique(client):
    g = new_group(client)
    r = client.post("/Groups", json={"displayName": g["displayName"].upper()})
    assert r.status_code == 409 and r.json()["scimType"] == "uniqueness"


def test_create_with_members_and_read_back(client, server):
    u1, u2 = new_user(client, displayName="One"), new_user(client)
    g = new_group(client, members=[{"value": u1["id"], "display": "VP"}, {"value": u2["id"]}])
    got = {m["value"]: m for m in client.get(f"/Groups/{g['id']}").json()["members"]}
    assert got[u1["id"]] == {"value": u1["id"], "$ref": f"{server.url}/Users/{u1['id']}",
                             "type": "User", "display": "VP"}
    assert set(got) == {u1["id"], u2["id"]}
    # The user side shows the membership too (User.groups is read-only, derived).
    groups = client.get(f"/Users/{u1['id']}").json()["groups"]
    assert groups == [{"value": g["id"], "$ref": f"{server.url}/Groups/{g['id']}",
                       "display": g["displayName"], "type": "direct"}]


def test_member_must_exist(client):
    g = new_group(client)
    r = patch(client, f"/Groups/{g['id']}",
              {"op": "add", "path": "members", "value": [{"value": "no-such-id"}]})
    assert r.status_code == 400 and r.json()["scimType"] == "invalidValue"
    assert members_of(client, g["id"]) == set()


def test_patch_add_and_remove_members(client):
    users = [new_user(client) for _ in range(4)]
    ids = [u["id"] for u in users]
    g = new_group(client)
    url = f"/Groups/{g['id']}"
    r = patch(client, url, {"op": "add", "path": "members",
                            "value": [{"value": i} for i in ids]})
    assert r.status_code == 204 and r.content == b""
    assert members_of(client, g["id"]) == set(ids)
    # re-adding is a success and changes nothing
    assert patch(client, url, {"op": "add", "path": "members",
                               "value": [{"value": ids[0]}]}).status_code == 204
    # RFC value-filter removal
    assert patch(client, url, {"op": "remove",
                               "path": f'members[value eq "{ids[0]}"]'}).status_code == 204
    assert members_of(client, g["id"]) == set(ids[1:])
    # removing an absent member is a success
    assert patch(client, url, {"op": "remove",
                               "path": f'members[value eq "{ids[0]}"]'}).status_code == 204
    # remove with a value list removes only the listed ids
    assert patch(client, url, {"op": "remove", "path": "members",
                               "value": [{"value": ids[1]}]}).status_code == 204
    assert members_of(client, g["id"]) == set(ids[2:])
    # a bare remove empties the group
    assert patch(client, url, {"op": "remove", "path": "members"}).status_code == 204
    assert members_of(client, g["id"]) == set()


def test_patch_replace_members_and_display_name(client):
    a, b = new_user(client), new_user(client)
    g = new_group(client, members=[{"value": a["id"]}])
    new_name = unique("renamed")
    r = patch(client, f"/Groups/{g['id']}",
              {"op": "replace", "path": "displayName", "value": new_name},
              {"op": "replace", "path": "members", "value": [{"value": b["id"]}]})
    assert r.status_code == 204
    got = client.get(f"/Groups/{g['id']}").json()
    assert got["displayName"] == new_name
    assert [m["value"] for m in got["members"]] == [b["id"]]


def test_patch_member_display_through_filter(client):
    a = new_user(client)
    g = new_group(client, members=[{"value": a["id"], "display": "old"}])
    r = patch(client, f"/Groups/{g['id']}", {"op": "replace",
              "path": f'members[value eq "{a["id"]}"].display', "value": "new"})
    assert r.status_code == 204
    assert client.get(f"/Groups/{g['id']}").json()["members"][0]["display"] == "new"


def test_excluded_members_on_get_and_list(client):
    a = new_user(client)
    g = new_group(client, members=[{"value": a["id"]}])
    got = client.get(f"/Groups/{g['id']}?excludedAttributes=members").json()
    assert "members" not in got and got["displayName"] == g["displayName"]
    listed = client.get("/Groups", params={"excludedAttributes": "members",
                                           "filter": f'displayName eq "{g["displayName"]}"'})
    res = listed.json()["Resources"]
    assert len(res) == 1 and "members" not in res[0]


def test_deleting_a_user_removes_its_memberships(client):
    a, b = new_user(client), new_user(client)
    g = new_group(client, members=[{"value": a["id"]}, {"value": b["id"]}])
    assert client.delete(f"/Users/{a['id']}").status_code == 204
    assert members_of(client, g["id"]) == {b["id"]}


def test_nested_group_member_and_self_membership(client):
    inner = new_group(client)
    outer = new_group(client, members=[{"value": inner["id"]}])
    assert client.get(f"/Groups/{outer['id']}").json()["members"][0]["type"] == "Group"
    r = patch(client, f"/Groups/{outer['id']}",
              {"op": "add", "path": "members", "value": [{"value": outer["id"]}]})
    assert r.status_code == 400


def test_group_filters_on_members(client):
    a = new_user(client)
    g = new_group(client, members=[{"value": a["id"]}])
    r = client.get("/Groups", params={
        "filter": f'id eq "{g["id"]}" and members eq "{a["id"]}"', "attributes": "id"})
    body = r.json()
    assert body["totalResults"] == 1 and body["Resources"][0] == {
        "schemas": [GROUP], "id": g["id"]}
    r = client.get("/Users", params={"filter": f'groups.value eq "{g["id"]}"'})
    assert [u["id"] for u in r.json()["Resources"]] == [a["id"]]


def test_put_group_replaces_members(client):
    a, b = new_user(client), new_user(client)
    g = new_group(client, members=[{"value": a["id"]}], externalId="x")
    r = client.put(f"/Groups/{g['id']}", json={
        "displayName": "putName-" + unique(), "members": [{"value": b["id"]}]})
    assert r.status_code == 200
    body = r.json()
    assert "externalId" not in body
    assert [m["value"] for m in body["members"]] == [b["id"]]
