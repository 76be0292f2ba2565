"""RFC 8935 push (scim_server/events/push.py) to a receiver on loopback that answers as told:
in order, with the receiver's own Authorization header, retried through every kind of failure
without blocking a SCIM request, visible in metrics and in one log line per state change."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from conftest import new_user, wait_until

from scim_server.events.push import retry_after

from .conftest import decode, start


class Receiver:
    """A push endpoint. `script` is what it answers next, one entry a request (then 202):
    a status, ("html",), ("redirect",), ("hang", seconds), (status, {"err": ...}) or
    (503, "Retry-After seconds")."""

    def __init__(self, port: int = 0) -> None:
        self.script: list = []
        self.received: list[tuple[float, dict, bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                step = receiver.script.pop(0) if receiver.script else 202
                status = step if isinstance(step, int) else step[0]
                receiver.received.append((time.monotonic(), dict(self.headers), body,
                                          200 if status in ("html", "hang") else
                                          302 if status == "redirect" else status))
                if status == "hang":
                    time.sleep(step[1])
                    status = 202
                if status == "html":
                    self._answer(200, b"<html>Sign in</html>", "text/html")
                elif status == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:1/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif isinstance(step, tuple) and isinstance(step[1], dict):
                    self._answer(status, json.dumps(step[1]).encode(), "application/json")
                elif isinstance(step, tuple):
                    self.send_response(status)
                    self.send_header("Retry-After", step[1])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._answer(status, b"", None)

            def _answer(self, status, body, ctype):
                self.send_response(status)
                if ctype:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.http.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/scim-events"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def delivered(self) -> list[bytes]:
        return [body for _, _, body, status in self.received if status == 202]

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()  # the port refuses connections now


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def pushing(tmp_path, receiver, *extra):
    auth = tmp_path / "push-authorization"
    auth.write_text("Bearer receiver-secret\n")
    return start(tmp_path / "srv", ["--events-push-url", receiver.url,
                                    "--events-push-authorization-file", str(auth),
                                    "--events-push-timeout", "1", *extra])


def test_each_set_is_pushed_in_order_with_the_receivers_authorization(tmp_path, receiver):
    srv = pushing(tmp_path, receiver)
    try:
        users = [new_user(srv.scim) for _ in range(5)]
        wait_until(lambda: len(receiver.delivered()) == 5, what="five pushes")
        uris = [decode(body.decode(), srv)["sub_id"]["uri"] for body in receiver.delivered()]
        assert uris == [f"/Users/{u['id']}" for u in users]
        headers = receiver.received[0][1]
        assert headers["Content-Type"] == "application/secevent+jwt"
        assert headers["Accept"] == "application/json"
        assert headers["Authorization"] == "Bearer receiver-secret"
        # Delivered means acknowledged: the outbox is empty, and poll is not this stream's.
        r = srv.events.post("/events", json={"returnImmediately": True})
        assert r.status_code == 409 and "push" in r.json()["description"]
        metrics = httpx.get(srv.root + "/metrics").text
        assert "scim_events_backlog 0.0" in metrics
        assert 'scim_events_delivered_total{via="push"} 5.0' in metrics
        assert "receiver-secret" not in srv.logs() + metrics
    finally:
        srv.stop()


@pytest.mark.parametrize(("failure", "reason"), [
    (500, "http_error"),
    (("html",), "http_error"),  # a 200 with a page: not an RFC 8935 receiver's 202
    (("redirect",), "redirect"),
    ((400, {"err": "invalid_key", "description": "unknown kid"}), "rejected"),
    (("hang", 3), "timeout"),
])
def test_a_failing_push_is_retried_until_delivered_and_nothing_is_skipped(
        tmp_path, receiver, failure, reason):
    receiver.script = [failure]
    srv = pushing(tmp_path, receiver)
    try:
        first = new_user(srv.scim)
        second = new_user(srv.scim)  # waits behind the first: order is kept
        wait_until(lambda: len(receiver.delivered()) == 2, timeout=30, what="both delivered")
        uris = [decode(b.decode(), srv)["sub_id"]["uri"] for b in receiver.delivered()]
        assert uris == [f"/Users/{first['id']}", f"/Users/{second['id']}"]
        assert receiver.received[0][2] == receiver.received[1][2]  # the same SET again
        metrics = httpx.get(srv.root + "/metrics").text
        assert f'scim_events_push_attempts_total{{result="{reason}"}} 1.0' in metrics
        assert "scim_events_push_failing_since_timestamp_seconds 0.0" in metrics
        logs = srv.logs()
        assert logs.count("event push failing") == 1 and logs.count("event push recovered") == 1
    finally:
        srv.stop()


def test_a_hanging_receiver_never_blocks_a_scim_request(tmp_path, receiver):
    receiver.script = [("hang", 5)] * 3
    srv = pushing(tmp_path, receiver, "--events-push-timeout", "4")
    try:
        new_user(srv.scim)
        wait_until(lambda: receiver.received, what="the first push, which hangs")
        started = time.monotonic()
        for _ in range(20):  # each answered while the push waits for its answer
            new_user(srv.scim)
        assert time.monotonic() - started < 4, "SCIM writes waited for the push"
        assert len(receiver.received) == 1
    finally:
        srv.stop()


def test_retry_after_is_honoured(tmp_path, receiver):
    receiver.script = [(503, "3")]
    srv = pushing(tmp_path, receiver)
    try:
        new_user(srv.scim)
        wait_until(lambda: len(receiver.delivered()) == 1, timeout=30, what="the retry")
        refused, retried = receiver.received[0][0], receiver.received[1][0]
        assert retried - refused >= 3
    finally:
        srv.stop()


def test_retry_after_as_seconds_or_a_date():
    now = time.time()
    assert retry_after("120", now) == 120
    assert 59 <= retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT",
                                           time.gmtime(now + 60)), now) <= 61
    assert retry_after("soon", now) is None and retry_after(None, now) is None


def test_events_wait_for_a_receiver_down_for_a_while_and_survive_a_restart(tmp_path):
    """Nothing listens at the endpoint; the events wait in the outbox across a restart of
    the server, and arrive in order once a receiver listens there."""
    gone = Receiver()
    gone.close()
    srv = start(tmp_path / "srv", ["--events-push-url", gone.url, "--events-push-timeout", "1"])
    try:
        users = [new_user(srv.scim) for _ in range(3)]
        wait_until(lambda: "event push failing" in srv.logs(), what="the failure logged")
        srv.stop()
        srv.start()  # the same data folder: the events are still there
        users.append(new_user(srv.scim))
        back = Receiver(gone.port)
        try:
            wait_until(lambda: len(back.delivered()) == 4, timeout=60,
                       what="the backlog pushed")
            uris = [decode(b.decode(), srv)["sub_id"]["uri"] for b in back.delivered()]
            assert uris == [f"/Users/{u['id']}" for u in users]
        finally:
            back.close()
    finally:
        srv.stop()


def test_without_a_signing_key_push_waits_and_says_so_once(tmp_path, receiver):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = tmp_path / "key.pem"
    key.write_text("")
    srv = pushing(tmp_path, receiver, "--events-signing-key-file", str(key))
    try:
        users = [new_user(srv.scim) for _ in range(2)]  # Entra is served all along
        wait_until(lambda: srv.logs().count("event push cannot run") == 1, what="the error")
        key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        wait_until(lambda: len(receiver.delivered()) == 2, timeout=30, what="the pushes")
        uris = [decode(b.decode(), srv)["sub_id"]["uri"] for b in receiver.delivered()]
        assert uris == [f"/Users/{u['id']}" for u in users]
        assert srv.logs().count("event push cannot run") == 1
    finally:
        srv.stop()
