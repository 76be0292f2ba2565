"""Nothing lost, nothing invented: `kill -9` during writes and polls (storage/writes.py writes
each event in its change's transaction; events/stream.py redelivers what was not
acknowledged).

A writer creates users and patches each once with a marker of its own, noting which requests
were answered; a poller acknowledges every SET it receives. The server is killed twice
mid-stream and started again on the same data. Then, after dropping duplicates by jti: every
answered change has its event; a change whose answer was lost is looked up on the server,
and has an event exactly when it happened; no event names a change that did not happen.
"""

from __future__ import annotations

import signal
import threading

import httpx
from conftest import USER, wait_until

from .conftest import decode, start

CREATE = "urn:ietf:params:scim:event:prov:create:full"
PATCH = "urn:ietf:params:scim:event:prov:patch:full"


class Writer(threading.Thread):
    def __init__(self, srv) -> None:
        super().__init__(daemon=True)
        self.srv = srv
        self.stop = threading.Event()
        self.creates: dict[str, str] = {}  # userName -> "ok" | "lost"
        self.patches: dict[str, tuple[str, str]] = {}  # marker -> (user id, "ok" | "lost")
        self.ids: dict[str, str] = {}  # userName -> id, for answered creates

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            name = f"crash-{n}@x.com"
            try:
                r = self.srv.scim.post("/Users", json={"schemas": [USER], "userName": name})
            except httpx.TransportError:
                self.creates[name] = "lost"
                self.srv_down()
                continue
            assert r.status_code == 201, r.text
            self.creates[name] = "ok"
            self.ids[name] = r.json()["id"]
            marker = f"m{n}"
            try:
                r = self.srv.scim.patch(f"/Users/{self.ids[name]}", json={
                    "Operations": [{"op": "add", "path": "title", "value": marker}]})
                assert r.status_code == 200, r.text
                self.patches[marker] = (self.ids[name], "ok")
            except httpx.TransportError:
                self.patches[marker] = (self.ids[name], "lost")
                self.srv_down()

    def srv_down(self) -> None:
        wait_until(lambda: self.stop.is_set() or self.srv.up.is_set(), timeout=60,
                   what="the server back")


class Poller(threading.Thread):
    def __init__(self, srv) -> None:
        super().__init__(daemon=True)
        self.srv = srv
        self.stop = threading.Event()
        self.sets: list[tuple[str, str]] = []  # (jti, SET), duplicates included

    def run(self) -> None:
        acks: list[str] = []
        while not self.stop.is_set():
            try:
                r = self.srv.events.post("/events", json={"ack": acks, "maxEvents": 50,
                                                          "returnImmediately": True})
            except httpx.TransportError:
                # The answer (and whether our acks landed) is lost: poll again after the
                # restart with the same acks; what comes twice is dropped by jti below.
                wait_until(lambda: self.stop.is_set() or self.srv.up.is_set(), timeout=60,
                           what="the server back")
                continue
            assert r.status_code == 200, r.text
            sets = r.json()["sets"]
            self.sets += sets.items()
            acks = list(sets)


def test_kill_9_during_writes_and_polls_loses_and_invents_nothing(tmp_path):
    # A Tenant URL of its own: the server comes back on another port, the stream's issuer stays.
    srv = start(tmp_path / "srv", ["--public-url", "https://crash.example.com/scim/v2"])
    srv.up = threading.Event()
    srv.up.set()
    writer, poller = Writer(srv), Poller(srv)
    writer.start()
    poller.start()
    try:
        for _round in range(2):
            wait_until(lambda n=len(writer.creates) + 40: len(writer.creates) >= n,
                       timeout=60, what="writes going on")
            srv.up.clear()
            srv.stop(signal.SIGKILL)
            srv.start()
            srv.up.set()
        wait_until(lambda n=len(writer.creates) + 20: len(writer.creates) >= n, timeout=60,
                   what="writes after the last restart")
    finally:
        writer.stop.set()
        writer.join(timeout=60)
    # The last events arrive; then nothing is left unacknowledged.
    wait_until(lambda: "scim_events_backlog 0.0" in httpx.get(srv.root + "/metrics").text,
               timeout=60, what="the poller drained the stream")
    poller.stop.set()
    poller.join(timeout=60)
    try:
        unique: dict[str, dict] = {}
        for jti, token in poller.sets:
            claims = decode(token, srv)
            assert unique.setdefault(jti, claims) == claims  # a repeat is the same event
        created = {c["events"][CREATE]["data"]["userName"]: c for c in unique.values()
                   if CREATE in c["events"]}
        patched = {c["events"][PATCH]["resource"]["title"]: c for c in unique.values()
                   if PATCH in c["events"]}
        assert len(created) + len(patched) == len(unique)

        lost = 0
        for name, outcome in writer.creates.items():
            if outcome == "lost":  # look it up: did the create happen?
                lost += 1
                found = srv.scim.get("/Users", params={"filter": f'userName eq "{name}"'})
                happened = found.json()["totalResults"] == 1
            else:
                happened = True
            assert (name in created) == happened, name
        for marker, (uid, outcome) in writer.patches.items():
            if outcome == "lost":
                lost += 1
                happened = srv.scim.get(f"/Users/{uid}").json().get("title") == marker
            else:
                happened = True
            assert (marker in patched) == happened, marker
        # No event for anything the writer did not do.
        assert set(created) <= set(writer.creates)
        assert set(patched) <= set(writer.patches)
        assert lost >= 2, "the kills cut no request: the test proved less than it says"
    finally:
        srv.stop()
