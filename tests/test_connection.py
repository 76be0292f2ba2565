"""Every connection is bounded in time: a client that connects and stalls, at any point before
its request is complete, gets a SCIM 408 and is disconnected, on a real server whose request
deadline is 1 s. Time the server spends answering does not count against the client."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from conftest import own_server, wait_until

from scim_server.connection import _CoalescingTransport

DEADLINE = 1.0
PATIENCE = 10  # seconds the test waits for the server to act before calling it stalled


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = own_server(tmp_path_factory, "deadline", ["--request-timeout", str(DEADLINE)])
    yield s
    s.stop()


def connect(srv) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.settimeout(PATIENCE)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


def response(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, \
        json.loads(body) if body else {}


def scim_408(raw: bytes) -> None:
    status, headers, body = response(raw)
    assert status == 408, raw
    assert headers["content-type"] == "application/scim+json"
    assert headers["connection"] == "close"
    assert body["status"] == "408" and "1 s" in body["detail"], body


@pytest.mark.parametrize("sent", [
    b"",  # connects, sends nothing
    b"GET /scim/v2/Us",  # part of the request line
    b"GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\n",  # headers without the final blank line
])
def test_a_stalled_request_gets_408_and_is_closed(srv, sent):
    with connect(srv) as sock:
        sock.sendall(sent)
        scim_408(read_all(sock))


def test_a_stalled_body_gets_408_and_is_closed(srv):
    with connect(srv) as sock:
        sock.sendall(b"POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer " + srv.token.encode() + b"\r\n"
                     b"Content-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n"
                     b'{"schemas":')
        scim_408(read_all(sock))
    # The handler that was waiting for the body ends quietly, as a 408.
    wait_until(lambda: b'"method":"POST","path":"/scim/v2/Users","status":408' in
               srv.log_path.read_bytes(), what="the access log line of the stalled request")
    assert b"unhandled error" not in srv.log_path.read_bytes()


def test_each_request_on_a_connection_gets_its_own_deadline(srv):
    """A keep-alive client, slow between requests and slow within one, is served as long as
    each request arrives within the deadline, however long the connection lives."""
    request = (b"GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\n"
               b"Authorization: Bearer " + srv.token.encode() + b"\r\n\r\n")
    with connect(srv) as sock:
        started = time.monotonic()
        for _ in range(3):
            half = len(request) // 2
            sock.sendall(request[:half])
            time.sleep(DEADLINE * 0.4)  # the client is slow, not stalled
            sock.sendall(request[half:])
            raw = b""
            while b"\r\n\r\n" not in raw:
                raw += sock.recv(65536)
            status, headers, _ = response(raw.partition(b"\r\n\r\n")[0] + b"\r\n\r\n")
            body = raw.partition(b"\r\n\r\n")[2]
            while len(body) < int(headers["content-length"]):
                body += sock.recv(65536)
            assert status == 200, raw
            time.sleep(DEADLINE * 0.4)  # idle within uvicorn's keep-alive timeout
        assert time.monotonic() - started > 2 * DEADLINE  # longer than one deadline in all


def test_a_request_the_http_parser_refuses_gets_a_scim_400(srv):
    with connect(srv) as sock:
        sock.sendall(b"GET /scim/v2/Users HTTP/1.1\r\nHost x\r\n\r\n")
        status, headers, body = response(read_all(sock))
    assert status == 400
    assert headers["content-type"] == "application/scim+json"
    assert body["scimType"] == "invalidSyntax" and body["status"] == "400"


def test_pipelined_requests_get_whole_responses_in_order(srv):
    """Each response's writes leave together (connection.py): a HEAD, whose head is its only
    write, and pipelined requests still come back whole and in order."""
    with connect(srv) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = read_all(sock)
    head, rest = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 15" in head.lower()
    answers = [response(b"HTTP/1.1 " + r) for r in rest.split(b"HTTP/1.1 ")[1:]]
    assert [(status, body["status"]) for status, _, body in answers] == [(200, "ok")] * 2


def test_a_response_is_written_once_and_nothing_waits_past_the_loop_turn():
    class Recorder:
        def __init__(self):
            self.writes, self.closed = [], False

        def write(self, data):
            self.writes.append(data)

        def is_closing(self):
            return self.closed

        def close(self):
            self.closed = True

        def get_extra_info(self, name):
            return name

    async def run():
        real = Recorder()
        t = _CoalescingTransport(real, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"body")
        assert real.writes == []
        t.flush()  # what the protocol does when the response is complete
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        t.write(b"part")  # a response streamed in parts: sent at the end of this loop turn
        await asyncio.sleep(0)
        assert real.writes[-1] == b"part"
        t.write(b"last")
        t.close()
        assert real.writes[-1] == b"last" and real.closed
        assert t.get_extra_info("peername") == "peername"

    asyncio.run(run())
