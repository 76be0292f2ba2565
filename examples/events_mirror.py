"""A receiver that keeps a mirror of a tenant's users and groups in SQLite, from its event stream.

This is what the Joyn FSM application does with joyn_scim_events, in its smallest form: a Store
with three methods, each one SQLite transaction, and a receiver that calls them.

    python examples/events_mirror.py poll --server http://acme-scim.customers.svc:8080 \\
        --token-file receiver-token --issuer https://acme.scim.example.com/scim/v2 --db mirror.db
    python examples/events_mirror.py push --listen 0.0.0.0:9000 (same options)

What each event means for the application:
- create / put / patch: the user or group is now `event.resource` (store it whole).
- a group's patch: `members_added` joined (or changed display), `members_removed` left.
- `event.active is False`: Entra disabled the user: take their access away, keep the record.
- delete: the user or group is gone (remove it and its memberships).
"""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3
from wsgiref.simple_server import WSGIRequestHandler, make_server

from joyn_scim_events import Event, EventServer, PollReceiver, Position, PushReceiver, Snapshot

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (type TEXT, id TEXT, resource TEXT, PRIMARY KEY (type, id));
CREATE TABLE IF NOT EXISTS members (group_id TEXT, value TEXT, member TEXT,
                                    PRIMARY KEY (group_id, value));
CREATE TABLE IF NOT EXISTS position (stream TEXT, seq INTEGER);
"""


class SqliteMirror:
    """joyn_scim_events.Store over one SQLite file: the resources as the server shows them,
    groups' members in their own table (one member changes one row), and the position."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.executescript(SCHEMA)

    def position(self) -> Position | None:
        row = self.db.execute("SELECT stream, seq FROM position").fetchone()
        return Position(*row) if row else None

    def _put(self, type_: str, resource: dict) -> None:
        members = resource.pop("members", None)
        self.db.execute("INSERT OR REPLACE INTO resources VALUES (?, ?, ?)",
                        (type_, resource["id"], json.dumps(resource)))
        if members is not None:  # a whole member list (create, put, snapshot)
            self.db.execute("DELETE FROM members WHERE group_id = ?", (resource["id"],))
            self._add_members(resource["id"], members)

    def _add_members(self, group_id: str, members: list[dict]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO members VALUES (?, ?, ?)",
                            [(group_id, m["value"], json.dumps(m)) for m in members])

    def _set_position(self, position: Position) -> None:
        self.db.execute("DELETE FROM position")
        self.db.execute("INSERT INTO position VALUES (?, ?)", position)

    def apply(self, event: Event) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if event.kind == "delete":
                self.db.execute("DELETE FROM resources WHERE type = ? AND id = ?",
                                (event.resource_type, event.id))
                self.db.execute("DELETE FROM members WHERE group_id = ? OR value = ?",
                                (event.id, event.id))
            else:
                self._put(event.resource_type, dict(event.resource))
                self._add_members(event.id, event.members_added)
                self.db.executemany("DELETE FROM members WHERE group_id = ? AND value = ?",
                                    [(event.id, v) for v in event.members_removed])
            self._set_position(event.position)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def reset(self, snapshot: Snapshot) -> None:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute("DELETE FROM resources")
            self.db.execute("DELETE FROM members")
            for user in snapshot.users:
                self._put("User", user)
            for group in snapshot.groups:
                self._put("Group", group)
            self._set_position(snapshot.position)
            self.db.execute("COMMIT")
        except BaseException:  # a snapshot cut short or altered: keep the mirror as it was
            self.db.execute("ROLLBACK")
            raise

    def dump(self) -> dict:
        """{type: {id: resource}}, groups with their members: what a test compares."""
        out: dict = {"User": {}, "Group": {}}
        for type_, id_, resource in self.db.execute("SELECT type, id, resource FROM resources"):
            out[type_][id_] = json.loads(resource)
        for group_id, member in self.db.execute("SELECT group_id, member FROM members"):
            if group_id in out["Group"]:
                out["Group"][group_id].setdefault("members", []).append(json.loads(member))
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["poll", "push"])
    p.add_argument("--server", required=True, help="the tenant's Service URL (event endpoints)")
    p.add_argument("--token-file", required=True, help="the receiver credential")
    p.add_argument("--issuer", required=True, help="the Tenant URL (the SETs' iss)")
    p.add_argument("--audience", default="joyn-fsm")
    p.add_argument("--db", default="mirror.db")
    p.add_argument("--listen", default="0.0.0.0:9000", help="push: address to listen on")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO)
    with open(args.token_file) as f:
        server = EventServer(args.server, f.readline().strip())
    store = SqliteMirror(args.db)
    if args.mode == "poll":
        PollReceiver(server, args.issuer, store, args.audience).run()
    else:
        host, port = args.listen.rsplit(":", 1)
        receiver = PushReceiver(server, args.issuer, store, args.audience)
        make_server(host, int(port), receiver.wsgi, handler_class=WSGIRequestHandler
                    ).serve_forever()


if __name__ == "__main__":
    main()
