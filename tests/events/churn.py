"""A long churn shaped like Entra's provisioning, and the server's state to compare a mirror with.

The requests are the shapes tests/test_entra.py proves one by one (../shared's Entra notes):
creates with the extensions, PATCH in both dialects, disable and enable with "False"/"True"
strings, member adds and removes by value list, renames, a PUT, deletes of users still in
groups, and writes that fail (409, 412, 400, 404) and must leave no event.
"""

from __future__ import annotations

import random

import httpx
from conftest import ENTERPRISE, GROUP, JOYN, PATCH_OP, USER

_FAILURES = {409, 412, 400, 404}


class Churn:
    def __init__(self, client: httpx.Client, seed: int = 7) -> None:
        self.client = client
        self.rng = random.Random(seed)
        self.users: list[str] = []
        self.groups: list[str] = []
        self.n = 0
        self.failed = 0

    def _name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def _ok(self, r: httpx.Response, *statuses: int) -> httpx.Response:
        assert r.status_code in statuses, (r.request.method, r.request.url, r.text)
        if r.status_code in _FAILURES:
            self.failed += 1
        return r

    def _patch(self, path: str, *ops: dict, **kw) -> httpx.Response:
        return self.client.patch(path, json={"schemas": [PATCH_OP], "Operations": list(ops)},
                                 **kw)

    def create_user(self) -> None:
        name = self._name("user") + "@contoso.com"
        body = {"schemas": [USER, ENTERPRISE], "externalId": self._name("ext"),
                "userName": name, "active": self.rng.random() > 0.1,
                "displayName": f"User {self.n}",
                "emails": [{"primary": True, "type": "work", "value": name}],
                "name": {"givenName": "Given", "familyName": f"F{self.n}"},
                ENTERPRISE: {"department": "Field"}, JOYN: {"xid": f"X{self.n}"}}
        self.users.append(self._ok(self.client.post("/Users", json=body), 201).json()["id"])

    def patch_user(self) -> None:
        uid = self.rng.choice(self.users)
        n = self._name("v")
        op = self.rng.choice([
            {"op": "Replace", "path": "displayName", "value": f"Renamed {n}"},
            {"op": "Replace", "path": 'emails[type eq "work"].value', "value": f"{n}@x.com"},
            {"op": "replace", "value": {"displayName": f"D {n}", "name.givenName": n}},
            {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": f"+47 {n}"},
            {"op": "Replace", "path": f"{ENTERPRISE}:department", "value": n},
            {"op": "Add", "path": f"{JOYN}:joynFieldId", "value": n},
            {"op": "Remove", "path": "title"},
        ])
        self._ok(self._patch(f"/Users/{uid}", op), 200)

    def flip_active(self) -> None:
        uid = self.rng.choice(self.users)
        value = self.rng.choice(["False", "True", False, True])
        self._ok(self._patch(f"/Users/{uid}", {"op": "Replace", "path": "active",
                                               "value": value}), 200)

    def put_user(self) -> None:
        uid = self.rng.choice(self.users)
        current = self.client.get(f"/Users/{uid}").json()
        body = {k: v for k, v in current.items() if k not in ("meta", "groups", "id")}
        body["title"] = self._name("title")
        self._ok(self.client.put(f"/Users/{uid}", json=body), 200)

    def create_group(self) -> None:
        members = [{"value": u} for u in self.rng.sample(self.users, min(3, len(self.users)))]
        body = {"schemas": [GROUP], "displayName": self._name("Group "), "members": members,
                "externalId": self._name("gext")}
        self.groups.append(self._ok(self.client.post("/Groups", json=body), 201).json()["id"])

    def members(self) -> None:
        if not self.groups:
            return
        gid, uid = self.rng.choice(self.groups), self.rng.choice(self.users)
        op = self.rng.choice(["Add", "Remove"])
        self._ok(self._patch(f"/Groups/{gid}", {"op": op, "path": "members",
                                                "value": [{"value": uid}]}), 204)

    def rename_group(self) -> None:
        if self.groups:
            self._ok(self._patch(f"/Groups/{self.rng.choice(self.groups)}", {
                "op": "Replace", "path": "displayName", "value": self._name("Team ")}), 204)

    def delete_user(self) -> None:
        if len(self.users) > 5:
            uid = self.users.pop(self.rng.randrange(len(self.users)))
            self._ok(self.client.delete(f"/Users/{uid}"), 204)

    def delete_group(self) -> None:
        if len(self.groups) > 2:
            gid = self.groups.pop(self.rng.randrange(len(self.groups)))
            self._ok(self.client.delete(f"/Groups/{gid}"), 204)

    def fail(self) -> None:
        uid = self.rng.choice(self.users)
        taken = self.client.get(f"/Users/{uid}").json()["userName"]
        nobody = "9edf3db5-0000-4000-8000-000000000000"
        failures = [
            lambda: self._ok(self.client.post("/Users", json={
                "schemas": [USER], "userName": taken.upper()}), 409),
            lambda: self._ok(self._patch(f"/Users/{uid}", {
                "op": "replace", "path": "title", "value": "x"},
                headers={"If-Match": 'W/"999"'}), 412),
            lambda: self._ok(self._patch(f"/Users/{uid}", {"op": "frobnicate",
                                                           "path": "title"}), 400),
            lambda: self._ok(self.client.delete(f"/Users/{nobody}"), 404),
        ]
        if self.groups:
            failures.append(lambda: self._ok(self._patch(f"/Groups/{self.groups[0]}", {
                "op": "Add", "path": "members", "value": [{"value": nobody}]}), 400))
        self.rng.choice(failures)()

    def run(self, steps: int) -> None:
        while len(self.users) < 8:
            self.create_user()
        actions = [(self.create_user, 3), (self.patch_user, 6), (self.flip_active, 3),
                   (self.put_user, 1), (self.create_group, 1), (self.members, 5),
                   (self.rename_group, 1), (self.delete_user, 1), (self.delete_group, 1),
                   (self.fail, 2)]
        funcs, weights = zip(*actions, strict=True)
        for _ in range(steps):
            self.rng.choices(funcs, weights)[0]()


def server_state(client: httpx.Client) -> dict:
    """{type: {id: resource}} as the SCIM API shows it now: what a mirror must equal. A
    user's `groups` is left out (the stream carries membership on the groups)."""
    out: dict = {"User": {}, "Group": {}}
    for type_, endpoint in (("User", "/Users"), ("Group", "/Groups")):
        start = 1
        while True:
            page = client.get(endpoint, params={"startIndex": start, "count": 500}).json()
            for r in page["Resources"]:
                r.pop("groups", None)
                out[type_][r["id"]] = r
            start += page["itemsPerPage"]
            if not page["Resources"] or start > page["totalResults"]:
                break
    return normalized(out)


def normalized(state: dict) -> dict:
    """Members in one order, and a group without members as an empty list."""
    for group in state["Group"].values():
        group["members"] = sorted(group.get("members") or [], key=lambda m: m["value"])
    return state
