"""The event stream of two server processes (replicas) on one PostgreSQL database: a long
poll or a watch on one wakes when the other commits, and a receiver polling either one gets
every event once, in commit order."""

from __future__ import annotations

import json
import secrets
import threading

import pytest
from conftest import new_user, wait_until

from scim_server.events.keys import generate_key_file

from .conftest import decode, start


@pytest.fixture
def replicas(tmp_path, postgres):
    """Two servers on one database, signing with one key (as a tenant's pods share its
    Secret); each with its own tokens, as each is its own client here."""
    dsn = postgres.new_database(f"ev_{secrets.token_hex(6)}")
    key = tmp_path / "signing-key.pem"
    generate_key_file(str(key))
    servers = [start(tmp_path / name, ["--db", dsn, "--events-signing-key-file", str(key),
                                       "--public-url", "https://acme.example/scim/v2"])
               for name in ("a", "b")]
    yield servers
    for srv in servers:
        srv.stop()


def test_a_long_poll_on_one_replica_answers_when_the_other_commits(replicas):
    a, b = replicas
    b.drain()
    answer: dict = {}
    poller = threading.Thread(target=lambda: answer.update(b.poll(maxEvents=10).json()))
    poller.start()
    user = new_user(a.scim)
    poller.join(timeout=60)
    assert not poller.is_alive(), "the long poll did not wake"
    [token] = answer["sets"].values()
    assert f"/Users/{user['id']}" == decode(token, b)["sub_id"]["uri"]


def test_a_watch_on_one_replica_follows_what_the_other_commits(replicas):
    a, b = replicas
    lines: list[dict] = []

    def follow():
        with b.events.stream("GET", "/events/tail", params={"follow": "1"}) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(json.loads(line))
                if len(lines) == 2:
                    return

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    made = [new_user(a.scim), new_user(b.scim)]
    watcher.join(timeout=60)
    assert [c["sub_id"]["uri"] for c in lines] == [f"/Users/{u['id']}" for u in made]


def test_a_receiver_gets_every_event_of_both_replicas_once_in_order(replicas):
    a, b = replicas
    made = []
    stop = threading.Event()

    def write(srv):
        while not stop.is_set() and len(made) < 60:
            made.append(new_user(srv.scim)["id"])

    writers = [threading.Thread(target=write, args=(srv,)) for srv in (a, b)]
    for w in writers:
        w.start()
    got: dict[str, str] = {}
    wait_until(lambda: got.update(b.drain()) or len(got) >= 60, timeout=60,
               what="every event")
    stop.set()
    for w in writers:
        w.join()
    got.update(b.drain())
    claims = [decode(t, b) for t in got.values()]
    positions = sorted(int(c["txn"]) for c in claims)
    assert positions == list(range(positions[0], positions[0] + len(made)))
    assert sorted(c["sub_id"]["uri"] for c in claims) == sorted(f"/Users/{i}" for i in made)
