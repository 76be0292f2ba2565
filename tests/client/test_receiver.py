"""The receivers (client/joyn_scim_events/receiver.py, server.py) against a real server: a store
starts from a snapshot, takes each change once and in order, is acknowledged only after it
stored a change, resyncs when the stream says so, and never takes a snapshot that was altered."""

from __future__ import annotations

import httpx
import pytest
from conftest import new_user, patch
from events.conftest import start
from joyn_scim_events import EventServer, PollReceiver, Position, PushReceiver, SetError


class MemoryStore:
    def __init__(self) -> None:
        self.at: Position | None = None
        self.users: dict[str, dict] = {}
        self.applied: list = []
        self.resets = 0
        self.fail_next = False

    def position(self):
        return self.at

    def apply(self, event):
        if self.fail_next:
            self.fail_next = False
            raise OSError("the application's database is down")
        self.applied.append(event)
        if event.kind == "delete":
            self.users.pop(event.id, None)
        elif event.resource_type == "User":
            self.users[event.id] = event.resource
        self.at = event.position

    def reset(self, snapshot):
        users = {u["id"]: u for u in snapshot.users}
        list(snapshot.groups)
        self.users, self.at = users, snapshot.position  # only once both read through
        self.resets += 1


@pytest.fixture
def srv(tmp_path):
    s = start(tmp_path / "srv")
    yield s
    s.stop()


def receiver(srv, store, **kw) -> PollReceiver:
    return PollReceiver(EventServer(srv.root, srv.receiver_token), srv.issuer, store, wait=0,
                        **kw)


def test_a_new_store_starts_from_a_snapshot_then_takes_each_change_once(srv):
    before = new_user(srv.scim)
    store = MemoryStore()
    r = receiver(srv, store)
    r.poll_once(return_immediately=True)  # the snapshot holds `before`; its event is dropped
    assert store.resets == 1 and store.applied == [] and set(store.users) == {before["id"]}
    after = new_user(srv.scim)
    patch(srv.scim, f"/Users/{after['id']}",
          {"op": "Replace", "path": "active", "value": "False"})
    r.poll_once(return_immediately=True)
    assert [(e.kind, e.id, e.active) for e in store.applied] == [
        ("create", after["id"], None), ("patch", after["id"], False)]
    assert store.users[after["id"]]["active"] is False
    r.poll_once(return_immediately=True)  # acknowledges; nothing comes twice
    r.poll_once(return_immediately=True)
    assert len(store.applied) == 2
    assert srv.poll(returnImmediately=True).json() == {"sets": {}}


def test_a_change_the_store_could_not_keep_is_not_acknowledged(srv):
    store = MemoryStore()
    r = receiver(srv, store)
    r.poll_once(return_immediately=True)
    user = new_user(srv.scim)
    store.fail_next = True
    with pytest.raises(OSError):
        r.poll_once(return_immediately=True)
    assert store.applied == []
    r.acks.clear()  # a receiver that crashed there has sent nothing
    r.poll_once(return_immediately=True)  # the same event comes again
    assert [e.id for e in store.applied] == [user["id"]]


def test_a_resync_event_replaces_the_store(tmp_path):
    srv = start(tmp_path / "srv", ["--events-retention-count", "1"])
    try:
        store = MemoryStore()
        r = receiver(srv, store)
        r.poll_once(return_immediately=True)
        for _ in range(3):
            new_user(srv.scim)
        srv.stop()  # the retention runs as the server starts: two events are discarded
        srv.start()
        r = receiver(srv, store)
        r.poll_once(return_immediately=True)
        assert store.resets == 2  # the start, and the gap
        assert len(store.users) == 3
    finally:
        srv.stop()


class Tampering(httpx.BaseTransport):
    """Between the receiver and the server, something changes one user in the snapshot."""

    def __init__(self) -> None:
        self.real = httpx.HTTPTransport()

    def handle_request(self, request):
        response = self.real.handle_request(request)
        if request.url.path != "/events/snapshot":
            return response
        body = response.read().replace(b'"active":true', b'"active":false', 1)
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def test_an_altered_snapshot_is_refused_and_the_store_kept(srv):
    new_user(srv.scim, active=True)
    store = MemoryStore()
    server = EventServer(srv.root, srv.receiver_token,
                         http=httpx.Client(transport=Tampering(), timeout=30))
    r = PollReceiver(server, srv.issuer, store, wait=0)
    with pytest.raises(SetError, match="does not match its signed proof"):
        r.poll_once(return_immediately=True)
    assert store.at is None and store.users == {}


def test_a_push_receiver_answers_as_rfc_8935_says(srv):
    store = MemoryStore()
    push = PushReceiver(EventServer(srv.root, srv.receiver_token), srv.issuer, store)
    push.resync()
    user = new_user(srv.scim)
    [token] = srv.poll(returnImmediately=True).json()["sets"].values()
    assert push.handle_push(token.encode())[0] == 202
    assert push.handle_push(token.encode())[0] == 202  # again: the same answer, kept once
    assert [e.id for e in store.applied] == [user["id"]]
    status, headers, body = push.handle_push(token.encode(), "application/json")
    assert status == 400 and b"invalid_request" in body
    assert headers["Content-Type"] == "application/json"
    forged = token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB")
    assert b"invalid_key" in push.handle_push(forged.encode())[2]
    other = PushReceiver(EventServer(srv.root, srv.receiver_token), srv.issuer, store,
                         audience="someone-else")
    assert b"invalid_audience" in other.handle_push(token.encode())[2]


def test_a_push_receiver_without_a_copy_asks_the_server_to_wait_while_it_resyncs(srv):
    new_user(srv.scim)
    store = MemoryStore()
    push = PushReceiver(EventServer(srv.root, srv.receiver_token), srv.issuer, store)
    [token] = srv.poll(returnImmediately=True).json()["sets"].values()
    status, headers, _ = push.handle_push(token.encode())
    assert status == 503 and headers["Retry-After"] == "5"
    push._resyncing.join(timeout=30)
    assert store.resets == 1
    assert push.handle_push(token.encode())[0] == 202  # in the snapshot: held, acknowledged
    assert store.applied == []
