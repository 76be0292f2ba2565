"""Discovery endpoints, routing errors and content types, over HTTP."""

import pytest
from conftest import ENTERPRISE, GROUP, JOYN, USER

SCIM_JSON = "application/scim+json"


def attrs(schema: dict) -> dict:
    return {a["name"]: a for a in schema["attributes"]}


def test_schemas_lists_all_four_with_full_definitions(client):
    r = client.get("/Schemas")
    assert r.status_code == 200
    assert r.headers["content-type"] == SCIM_JSON
    body = r.json()
    ids = [s["id"] for s in body["Resources"]]
    assert ids == [USER, GROUP, ENTERPRISE, JOYN]
    assert body["totalResults"] == 4 and body["itemsPerPage"] == 4
    user = attrs(body["Resources"][0])
    assert user["userName"]["required"] is True
    assert user["userName"]["uniqueness"] == "server"
    assert user["userName"]["caseExact"] is False
    assert user["password"]["returned"] == "never"
    assert user["groups"]["mutability"] == "readOnly"
    for name in ("emails", "phoneNumbers", "addresses"):
        type_attr = {s["name"]: s for s in user[name]["subAttributes"]}["type"]
        assert "work" in type_attr["canonicalValues"]
    phone_type = {s["name"]: s for s in user["phoneNumbers"]["subAttributes"]}["type"]
    assert "mobile" in phone_type["canonicalValues"]
    joyn = attrs(body["Resources"][3])
    assert set(joyn) == {"xid", "joynFieldId"}
    for a in joyn.values():
        assert a["type"] == "string" and a["multiValued"] is False
    assert "null" not in r.text  # absent values are left out, never sent as null


def test_schema_by_id_and_unknown_schema(client):
    r = client.get(f"/Schemas/{JOYN}")
    assert r.status_code == 200 and r.json()["id"] == JOYN
    r = client.get("/Schemas/urn:nope")
    assert r.status_code == 404
    assert r.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_resource_types(client):
    body = client.get("/ResourceTypes").json()
    assert body["totalResults"] == 2
    user = body["Resources"][0]
    assert user["endpoint"] == "/Users" and user["schema"] == USER
    assert {e["schema"] for e in user["schemaExtensions"]} == {ENTERPRISE, JOYN}
    assert client.get("/ResourceTypes/Group").json()["endpoint"] == "/Groups"
    assert client.get("/ResourceTypes/Nope").status_code == 404


def test_service_provider_config_is_complete_and_truthful(client):
    spc = client.get("/ServiceProviderConfig").json()
    assert spc["patch"]["supported"] is True
    assert spc["filter"] == {"supported": True, "maxResults": 1000}
    assert spc["bulk"]["supported"] is False and "maxOperations" in spc["bulk"]
    assert spc["sort"]["supported"] is True and spc["etag"]["supported"] is True
    assert spc["authenticationSchemes"][0]["type"] == "oauthbearertoken"


@pytest.mark.parametrize("method,path", [
    ("POST", "/Schemas"), ("PUT", "/ServiceProviderConfig"), ("DELETE", "/ResourceTypes"),
    ("PUT", "/Users"), ("DELETE", "/Groups"), ("POST", "/Users/some-id"), ("GET", "/.search"),
])
def test_wrong_method_is_405_with_scim_body(client, method, path):
    r = client.request(method, path)
    assert r.status_code == 405
    assert r.headers["content-type"] == SCIM_JSON
    assert r.json()["status"] == "405"


@pytest.mark.parametrize("path", ["/Nope", "/Users/does-not-exist", "/Groups/does-not-exist",
                                  "/Users/a/b"])
def test_unknown_path_or_id_is_404_with_scim_body(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == SCIM_JSON
    assert r.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]


def test_tenant_url_query_flags_are_ignored(client):
    r = client.get("/Users?aadOptscim062020&count=1")
    assert r.status_code == 200
