"""Filters (every operator and the full grammar), sorting, paging and projection, over HTTP,
on a server of its own holding a known set of users, on each backend in turn."""

import pytest
from conftest import ENTERPRISE, JOYN, USER, own_server, scim_client

PEOPLE = [
    # userName, displayName, active, title, work email, employeeNumber, xid
    ("Anna.Berg@Example.com", "Anna Berg", True, "Technician", "anna@example.com", "0007", "X1"),
    ("bob@example.org", "Bob Stone", False, "Dispatcher", "bob@example.org", "0012", "X2"),
    ("cara@example.com", "Cara Øster", True, "Technician", "cara@corp.example.net", "0100", None),
    ("dan@example.net", "Dan Field", True, None, None, "0003", "X4"),
    ("Émile@example.com", "Émile Zola", True, "Writer", "emile@example.com", None, None),
]


@pytest.fixture(scope="module")
def q(tmp_path_factory, db_args):
    srv = own_server(tmp_path_factory, "queries", db_args)
    with scim_client(srv, srv.token) as c:
        ids = {}
        for user_name, display, active, title, email, emp, xid in PEOPLE:
            body = {"schemas": [USER, ENTERPRISE], "userName": user_name,
                    "displayName": display, "active": active, "externalId": f"ext-{display}",
                    "name": {"givenName": display.split()[0], "familyName": display.split()[1]}}
            if title:
                body["title"] = title
            if email:
                body["emails"] = [{"type": "work", "value": email, "primary": True},
                                  {"type": "home", "value": f"home-{email}"}]
            if emp:
                body[ENTERPRISE] = {"employeeNumber": emp}
            if xid:
                body[JOYN] = {"xid": xid}
            r = c.post("/Users", json=body)
            assert r.status_code == 201, r.text
            ids[user_name] = r.json()["id"]
        c.ids = ids
        yield c
    srv.stop()


def names(client, flt, **params):
    r = client.get("/Users", params={"filter": flt, **params})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totalResults"] == len(body["Resources"])
    return sorted(u["userName"] for u in body["Resources"])


@pytest.mark.parametrize("flt,expected", [
    ('userName eq "anna.berg@example.com"', ["Anna.Berg@Example.com"]),
    ('USERNAME Eq "BOB@EXAMPLE.ORG"', ["bob@example.org"]),
    ('userName eq "émile@example.com"', ["Émile@example.com"]),  # non-ASCII case folding
    ('userName ne "bob@example.org"',
     ["Anna.Berg@Example.com", "cara@example.com", "dan@example.net", "Émile@example.com"]),
    ('displayName co "ST"', ["bob@example.org", "cara@example.com"]),
    ('userName sw "c"', ["cara@example.com"]),
    ('userName ew ".NET"', ["dan@example.net"]),
    ('title pr', ["Anna.Berg@Example.com", "bob@example.org", "cara@example.com",
                  "Émile@example.com"]),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber gt "0007"',
     ["bob@example.org", "cara@example.com"]),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber ge "0007"',
     ["Anna.Berg@Example.com", "bob@example.org", "cara@example.com"]),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber lt "0007"',
     ["dan@example.net"]),
    ('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber le "0007"',
     ["Anna.Berg@Example.com", "dan@example.net"]),
    ("active eq false", ["bob@example.org"]),
    ('title eq "technician" and active eq true', ["Anna.Berg@Example.com", "cara@example.com"]),
    ('title eq "Writer" or userName sw "dan"', ["dan@example.net", "Émile@example.com"]),
    ('not (title pr) or (userName eq "bob@example.org")', ["bob@example.org", "dan@example.net"]),
    ('emails[type eq "work" and value ew "@example.com"]',
     ["Anna.Berg@Example.com", "Émile@example.com"]),
    # Entra's form for a mapping to emails[type eq "work"].value, and the RFC's: one meaning,
    # the type and the value on the same email.
    ('emails[type eq "work"].value eq "ANNA@example.com"', ["Anna.Berg@Example.com"]),
    ('emails[type eq "work" and value eq "anna@example.com"]', ["Anna.Berg@Example.com"]),
    ('emails[type eq "work"].value eq "home-anna@example.com"', []),
    ('emails[type eq "home"].value eq "home-anna@example.com"', ["Anna.Berg@Example.com"]),
    ('emails[type eq "work"].value ew "example.com"',
     ["Anna.Berg@Example.com", "Émile@example.com"]),
    ('emails[type eq "work"].value pr',
     ["Anna.Berg@Example.com", "bob@example.org", "cara@example.com", "Émile@example.com"]),
    ('emails.value eq "cara@corp.example.net"', ["cara@example.com"]),
    ('emails eq "BOB@example.org"', ["bob@example.org"]),
    ('emails.type eq "home" and not (emails.value co "example.com")',
     ["bob@example.org", "cara@example.com"]),
    ('name.familyName eq "stone"', ["bob@example.org"]),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "dan@example.net"',
     ["dan@example.net"]),
    ('urn:ietf:params:scim:schemas:extension:joynfsm:2.0:User:xid eq "X4"', ["dan@example.net"]),
    ('externalId eq "ext-Cara Øster"', ["cara@example.com"]),
    ('externalId eq "EXT-CARA ØSTER"', []),  # externalId is caseExact
    ('meta.resourceType eq "User" and userName eq "dan@example.net"', ["dan@example.net"]),
    ('userName eq "a \\"quoted\\" name"', []),
])
def test_filter_operators(q, flt, expected):
    assert names(q, flt) == expected


def test_filter_on_dates_and_ids(q):
    dan = q.get(f"/Users/{q.ids['dan@example.net']}").json()
    created = dan["meta"]["created"]
    assert "dan@example.net" in names(q, f'meta.created ge "{created}"')
    assert "dan@example.net" not in names(q, f'meta.created gt "{created}"')
    # any offset and fraction length denote the same instant
    assert names(q, 'meta.lastModified gt "2015-10-10T14:38:21.8617979-07:00"') == sorted(
        u for u, *_ in PEOPLE)
    assert names(q, 'meta.lastModified gt "0500-01-01T00:00:00Z"') == sorted(u for u, *_ in PEOPLE)
    assert names(q, f'id eq "{dan["id"]}"') == ["dan@example.net"]


def test_plus_and_percent_encoded_query(q):
    r = q.get("/Users?filter=userName+eq+%22dan%40example.net%22")
    assert r.json()["totalResults"] == 1


def test_test_connection_filter_on_random_guid_is_empty_200(q):
    r = q.get('/Users?filter=externalId eq "9edf3db5-3f8e-4d47-9a7e-1f2c3b4a5d6e"')
    assert r.status_code == 200
    assert r.json() == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
                        "totalResults": 0, "itemsPerPage": 0, "startIndex": 1, "Resources": []}


@pytest.mark.parametrize("flt", [
    'userName eq', 'userName eq "x" and', '(userName eq "x"', 'userName zz "x"',
    'nosuchattr eq "x"', 'userName eq "unterminated', 'active gt true', 'name eq "x"',
    'emails[type eq "work"', 'urn:nope:User:x eq "1"', 'userName eq unquoted',
    'title eq "a" or', 'not title pr', 'emails[nope eq "x"]',
])
def test_bad_filters_are_400_invalid_filter(q, flt):
    r = q.get("/Users", params={"filter": flt})
    assert r.status_code == 400, flt
    assert r.json()["scimType"] == "invalidFilter"


def test_paging(q):
    everyone = q.get("/Users").json()
    assert everyone["totalResults"] == 5
    ids = [u["id"] for u in everyone["Resources"]]
    page = q.get("/Users?startIndex=2&count=2").json()
    assert (page["totalResults"], page["itemsPerPage"], page["startIndex"]) == (5, 2, 2)
    assert [u["id"] for u in page["Resources"]] == ids[1:3]
    last = q.get("/Users?startIndex=5&count=2").json()
    assert last["itemsPerPage"] == 1 and last["totalResults"] == 5
    beyond = q.get("/Users?startIndex=50&count=2").json()
    assert beyond["itemsPerPage"] == 0 and beyond["Resources"] == [] and \
        beyond["totalResults"] == 5
    zero = q.get("/Users?count=0").json()
    assert zero["totalResults"] == 5 and zero["itemsPerPage"] == 0
    low = q.get("/Users?startIndex=0&count=1").json()  # < 1 is read as 1 (RFC 7644 §3.4.2.4)
    assert low["startIndex"] == 1 and [u["id"] for u in low["Resources"]] == ids[:1]
    capped = q.get("/Users?count=100000").json()
    assert capped["itemsPerPage"] == 5
    assert q.get("/Users?count=abc").status_code == 400
    filtered = q.get('/Users?filter=active eq true&startIndex=2&count=1').json()
    assert filtered["totalResults"] == 4 and filtered["itemsPerPage"] == 1


def test_sorting(q):
    def order(**params):
        return [u["userName"] for u in q.get("/Users", params=params).json()["Resources"]]

    asc = order(sortBy="userName")
    assert asc == sorted((u for u, *_ in PEOPLE), key=str.casefold)
    assert order(sortBy="userName", sortOrder="descending") == asc[::-1]
    by_title = order(sortBy="title")
    assert by_title[-1] == "dan@example.net"  # no value sorts last
    by_email = order(sortBy="emails")  # the primary value
    assert by_email[0] == "Anna.Berg@Example.com"
    emp = order(sortBy=f"{ENTERPRISE}:employeeNumber")
    assert emp[:2] == ["dan@example.net", "Anna.Berg@Example.com"]
    assert q.get("/Users?sortBy=nope").status_code == 400
    assert q.get("/Users?sortBy=userName&sortOrder=sideways").status_code == 400


def test_attributes_projection(q):
    r = q.get("/Users", params={"attributes": "userName,name.givenName",
                                "filter": 'userName eq "dan@example.net"'}).json()
    assert r["Resources"][0] == {"schemas": [USER, ENTERPRISE, JOYN],
                                 "id": q.ids["dan@example.net"],
                                 "userName": "dan@example.net", "name": {"givenName": "Dan"}}
    one = q.get(f"/Users/{q.ids['dan@example.net']}",
                params={"attributes": f"{JOYN}:xid,emails.value"}).json()
    assert one[JOYN] == {"xid": "X4"} and "emails" not in one and "userName" not in one


def test_excluded_attributes_projection(q):
    one = q.get(f"/Users/{q.ids['Anna.Berg@Example.com']}",
                params={"excludedAttributes": f"emails.type,meta,{ENTERPRISE},id"}).json()
    assert "meta" not in one and ENTERPRISE not in one
    assert one["id"]  # returned "always", cannot be excluded
    assert one["emails"] == [{"value": "anna@example.com", "primary": True},
                             {"value": "home-anna@example.com"}]


def test_post_search(q):
    r = q.post("/Users/.search", json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": 'title eq "Technician"', "attributes": ["userName"], "sortBy": "userName",
        "startIndex": 1, "count": 10})
    assert r.status_code == 200
    assert [u["userName"] for u in r.json()["Resources"]] == [
        "Anna.Berg@Example.com", "cara@example.com"]
    everything = q.post("/.search", json={"filter": 'displayName pr', "count": 3}).json()
    assert everything["totalResults"] == 5 and everything["itemsPerPage"] == 3
    assert q.post("/.search", json={"filter": "bad filter ("}).status_code == 400
