"""User CRUD, validation, uniqueness, ETags and round-tripping, over HTTP."""

import threading

from conftest import ENTERPRISE, JOYN, USER, new_user, unique


def test_create_returns_full_resource_with_meta_and_location(client, server):
    name = unique("alice") + "@Example.com"
    r = client.post("/Users", json={
        "schemas": [USER, ENTERPRISE], "userName": name, "externalId": "ext-1",
        "active": True, "name": {"givenName": "Alice", "familyName": "Liddell"},
        "emails": [{"type": "work", "value": "a@example.com", "primary": True}],
        ENTERPRISE: {"department": "Field"},
    })
    assert r.status_code == 201
    body = r.json()
    assert body["id"] and body["userName"] == name
    assert body["schemas"] == [USER, ENTERPRISE]
    meta = body["meta"]
    assert meta["resourceType"] == "User"
    assert meta["created"] == meta["lastModified"]
    assert meta["location"] == f"{server.url}/Users/{body['id']}"
    assert r.headers["location"] == meta["location"]
    assert r.headers["etag"] == meta["version"]
    got = client.get(f"/Users/{body['id']}")
    assert got.status_code == 200 and got.json() == body


def test_values_round_trip_exactly_and_unknown_attributes_are_dropped(client):
    phone = "+1 (555) 010-0199 ext. 7"
    user = new_user(client, phoneNumbers=[{"type": "mobile", "value": phone}],
                    title="  Senior Tech  ", nickName="", bogus={"x": 1}, addresses=None,
                    **{JOYN: {"xid": "X-00017", "joynFieldId": "0042", "nope": 1},
                       "urn:example:unknown": {"a": 1}})
    got = client.get(f"/Users/{user['id']}").json()
    assert got["phoneNumbers"] == [{"type": "mobile", "value": phone}]
    assert got["title"] == "  Senior Tech  "
    assert got["nickName"] == ""
    assert "bogus" not in got and "addresses" not in got and "urn:example:unknown" not in got
    assert got[JOYN] == {"xid": "X-00017", "joynFieldId": "0042"}
    assert JOYN in got["schemas"]  # listed even though the request's schemas omitted it


def test_active_string_is_stored_as_boolean(client):
    user = new_user(client, active="False")
    assert user["active"] is False


def test_password_is_accepted_but_never_stored_or_returned(client):
    user = new_user(client, password="hunter2-hunter2")
    assert "password" not in user
    assert "hunter2" not in client.get(f"/Users/{user['id']}").text


def test_missing_username_is_400(client):
    r = client.post("/Users", json={"schemas": [USER], "displayName": "No Name"})
    assert r.status_code == 400
    body = r.json()
    assert body["scimType"] == "invalidValue" and "userName" in body["detail"]


def test_invalid_json_is_400_invalid_syntax(client):
    r = client.post("/Users", content=b'{"userName": "x",')
    assert r.status_code == 400
    assert r.json()["scimType"] == "invalidSyntax"


def test_wrong_types_are_400_and_change_nothing(client):
    for body in ({"userName": 42}, {"userName": "x", "active": "maybe"},
                 {"userName": "x", "emails": {"value": "a@b"}}, {"userName": "x", "name": "n"},
                 {"userName": "x", "emails": [{"value": 1}]}, ["not", "an", "object"]):
        r = client.post("/Users", json=body)
        assert r.status_code == 400, body
        assert r.json()["scimType"] in ("invalidValue", "invalidSyntax")
    assert client.get('/Users?filter=userName eq "x"').json()["totalResults"] == 0


def test_two_primary_values_are_rejected(client):
    r = client.post("/Users", json={"userName": unique(), "emails": [
        {"value": "a@x", "primary": True}, {"value": "b@x", "primary": True}]})
    assert r.status_code == 400 and "primary" in r.json()["detail"]


def test_oversized_body_is_413(client):
    r = client.post("/Users", json={"userName": unique(), "title": "x" * (1024 * 1024 + 1)})
    assert r.status_code == 413
    assert r.json()["status"] == "413"


def test_username_is_unique_case_insensitively(client):
    name = unique("Bob")
    holder = new_user(client, userName=name)
    r = client.post("/Users", json={"userName": name.upper()})
    assert r.status_code == 409
    body = r.json()
    assert body["scimType"] == "uniqueness" and "userName" in body["detail"]
    assert holder["id"] in body["detail"]  # the admin can find the user that has it


def test_concurrent_posts_of_one_username_create_exactly_one(server, client):
    name = unique("race")
    statuses = []
    barrier = threading.Barrier(16)

    def post():
        import httpx
        with httpx.Client(base_url=server.url, timeout=30,
                          headers={"Authorization": f"Bearer {server.token}"}) as c:
            barrier.wait()
            statuses.append(c.post("/Users", json={"userName": name}).status_code)

    threads = [threading.Thread(target=post) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201] + [409] * 15
    assert client.get(f'/Users?filter=userName eq "{name}"').json()["totalResults"] == 1


def test_put_replaces_the_whole_resource(client):
    user = new_user(client, title="Tech", nickName="Al", **{ENTERPRISE: {"department": "X"}})
    r = client.put(f"/Users/{user['id']}", json={
        "schemas": [USER], "id": "ignored", "userName": user["userName"], "displayName": "New"})
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == user["id"] and body["displayName"] == "New"
    assert "title" not in body and ENTERPRISE not in body
    assert body["meta"]["version"] != user["meta"]["version"]
    assert body["meta"]["created"] == user["meta"]["created"]


def test_put_cannot_take_another_users_name(client):
    a, b = new_user(client), new_user(client)
    r = client.put(f"/Users/{b['id']}", json={"userName": a["userName"].upper()})
    assert r.status_code == 409
    assert client.get(f"/Users/{b['id']}").json()["userName"] == b["userName"]


def test_delete_then_404(client):
    user = new_user(client)
    assert client.delete(f"/Users/{user['id']}").status_code == 204
    assert client.get(f"/Users/{user['id']}").status_code == 404
    assert client.delete(f"/Users/{user['id']}").status_code == 404
    r = client.get(f'/Users?filter=userName eq "{user["userName"]}"')
    assert r.status_code == 200 and r.json()["totalResults"] == 0


def test_etags_if_match_and_if_none_match(client):
    user = new_user(client)
    url = f"/Users/{user['id']}"
    etag = user["meta"]["version"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": 'W/"999"'}).status_code == 200
    r = client.put(url, json={"userName": user["userName"], "title": "a"},
                   headers={"If-Match": 'W/"999"'})
    assert r.status_code == 412
    assert "title" not in client.get(url).json()
    r = client.put(url, json={"userName": user["userName"], "title": "a"},
                   headers={"If-Match": etag})
    assert r.status_code == 200
    new_etag = r.headers["etag"]
    assert new_etag != etag
    assert client.delete(url, headers={"If-Match": etag}).status_code == 412
    assert client.delete(url, headers={"If-Match": new_etag}).status_code == 204


def test_inactive_users_are_still_returned(client):
    user = new_user(client, active=False)
    r = client.get(f'/Users?filter=userName eq "{user["userName"]}"').json()
    assert r["totalResults"] == 1 and r["Resources"][0]["active"] is False


def test_json_and_scim_json_request_bodies_are_both_accepted(client):
    for ctype in ("application/json", "application/scim+json; charset=utf-8"):
        r = client.post("/Users", content=f'{{"userName": "{unique()}"}}'.encode(),
                        headers={"Content-Type": ctype})
        assert r.status_code == 201, ctype
