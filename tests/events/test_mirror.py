"""The promise to Joyn FSM, end to end: a receiver that keeps a mirror from the stream alone
(examples/events_mirror.py on the client, joyn_scim_events) equals the server's state after a
long Entra-shaped churn, by poll and by push, with the receiver down part of the time.

What is compared: every user (as GET returns it, without `groups`) and every group (with its
members, in any order), attribute by attribute, meta included: versions and timestamps too.
"""

from __future__ import annotations

import re
import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from conftest import free_port, wait_until
from joyn_scim_events import EventServer, PollReceiver, PushReceiver

from scim_server.events.stream import EventSettings

from .churn import Churn, normalized, server_state
from .conftest import example_mirror, start

example = example_mirror()


def mirrored(path) -> dict:
    return normalized(example.SqliteMirror(str(path)).dump())  # its own connection


class Polling:
    """A poll receiver on a thread, stopped and started again as the test says."""

    def __init__(self, srv, db) -> None:
        self.srv, self.db = srv, db
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.resyncs = 0

    def start(self) -> None:
        receiver = PollReceiver(EventServer(self.srv.root, self.srv.receiver_token),
                                self.srv.issuer, example.SqliteMirror(str(self.db)), wait=1)
        self.stop_event = threading.Event()

        def run():
            receiver.run(self.stop_event)
            self.resyncs += receiver.resyncs

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        # The receiver sees the stop between polls, and a long poll the server holds lasts up
        # to its poll wait (30 s) when no event comes: wait for that, and a margin.
        self.thread.join(timeout=EventSettings.poll_wait + 15)
        assert not self.thread.is_alive()


def test_a_polling_mirror_equals_the_server_after_a_long_churn(tmp_path):
    srv = start(tmp_path / "srv")
    db = tmp_path / "mirror.db"
    try:
        churn = Churn(srv.scim, seed=1)
        churn.run(60)  # the tenant holds users before the receiver starts: a snapshot first
        receiver = Polling(srv, db)
        receiver.start()
        churn.run(150)
        receiver.stop()  # down for a while: the events wait
        churn.run(100)
        receiver.start()
        churn.run(100)
        wait_until(lambda: mirrored(db) == server_state(srv.scim), timeout=60,
                   what="the mirror equal to the server")
        receiver.stop()
        assert receiver.resyncs == 1  # only the start; the rest came from the stream
        assert delivered(srv, "poll") >= 300
        assert churn.failed >= 10
        state = server_state(srv.scim)
        assert len(state["User"]) >= 20 and len(state["Group"]) >= 3
    finally:
        srv.stop()


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def serve_push(receiver: PushReceiver, port: int) -> WSGIServer:
    http = make_server("127.0.0.1", port, receiver.wsgi, handler_class=_Quiet)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http


def delivered(srv, via: str) -> float:
    metrics = httpx.get(srv.root + "/metrics").text
    return float(re.search(rf'scim_events_delivered_total{{via="{via}"}} (\S+)', metrics)[1])


def test_a_pushed_mirror_equals_the_server_with_the_receiver_down_part_of_the_time(tmp_path):
    port = free_port()
    srv = start(tmp_path / "srv", ["--events-push-url", f"http://127.0.0.1:{port}/events",
                                   "--events-push-timeout", "5"])
    db = tmp_path / "mirror.db"
    try:
        churn = Churn(srv.scim, seed=2)
        churn.run(50)
        receiver = PushReceiver(EventServer(srv.root, srv.receiver_token), srv.issuer,
                                example.SqliteMirror(str(db)))
        http = serve_push(receiver, port)
        # The first push finds an empty mirror: it is answered 503 while the mirror starts
        # from a snapshot, and pushed again after it.
        wait_until(lambda: mirrored(db) == server_state(srv.scim), timeout=60,
                   what="the mirror started")
        churn.run(150)
        wait_until(lambda: mirrored(db) == server_state(srv.scim), timeout=60,
                   what="the mirror following the stream")
        http.shutdown()
        http.server_close()  # down: pushes are refused and retried
        churn.run(80)
        wait_until(lambda: "event push failing" in srv.logs(), what="the failure")
        http = serve_push(receiver, port)
        churn.run(80)
        wait_until(lambda: mirrored(db) == server_state(srv.scim), timeout=120,
                   what="the mirror equal to the server")
        http.shutdown()
        http.server_close()
        assert receiver.resyncs == 1  # the start; everything since came pushed
        assert delivered(srv, "push") >= 250
        assert "event push recovered" in srv.logs()
    finally:
        srv.stop()
