"""The HTTP of `kubectl joyn events` over a port-forward (joyn_operator/ctl/portforward.py):
the request written, and the answer read from the forwarded bytes in any slicing."""

import h11
import pytest
from joyn_operator.ctl.portforward import ForwardError, Response, frame, request_bytes


def test_the_request_is_one_get_with_our_headers_closing_after_it():
    raw = request_bytes("/events/tail?after=3", {"Authorization": "Bearer t"})
    server = h11.Connection(h11.SERVER)
    server.receive_data(raw)
    request = server.next_event()
    assert (request.method, request.target) == (b"GET", b"/events/tail?after=3")
    headers = dict(request.headers)
    assert headers[b"authorization"] == b"Bearer t" and headers[b"connection"] == b"close"


def answer(*chunks: bytes, status: int = 200, end: bool = True) -> bytes:
    server = h11.Connection(h11.SERVER)
    server.receive_data(request_bytes("/", {}))
    server.next_event()
    out = server.send(h11.Response(status_code=status, headers=[
        ("Content-Type", "application/x-ndjson"), ("Transfer-Encoding", "chunked")]))
    out += b"".join(server.send(h11.Data(data=c)) for c in chunks)
    return out + (server.send(h11.EndOfMessage()) if end else b"")


@pytest.mark.parametrize("size", [1, 7, 4096])
def test_a_chunked_answer_is_read_whole_however_the_bytes_arrive(size):
    raw = answer(b'{"jti":"s.1"}\n', b"\n", b'{"jti":"s.2"}\n')
    response, body = Response(), b""
    for i in range(0, len(raw), size):
        body += b"".join(response.feed(raw[i:i + size]))
    assert response.status == 200 and response.ended
    assert body == b'{"jti":"s.1"}\n\n{"jti":"s.2"}\n'
    response.close()  # a whole answer, then the connection closes: fine


def test_an_answer_cut_short_is_an_error_not_a_silent_end():
    response = Response()
    response.feed(answer(b'{"jti":"s.1"}\n', end=False))
    with pytest.raises(ForwardError, match="closed before the answer ended"):
        response.close()


def test_a_refusal_keeps_its_status_and_body():
    response = Response()
    body = b"".join(response.feed(answer(b'{"err":"authentication_failed"}', status=401)))
    assert response.status == 401 and b"authentication_failed" in body


def test_something_that_is_not_http_is_named():
    with pytest.raises(ForwardError, match="not HTTP"):
        Response().feed(b"SSH-2.0-OpenSSH\r\n\r\n")


def test_frames_carry_their_channel_first():
    assert frame(b"\x00abc") == (0, b"abc") and frame(b"\x01") == (1, b"")
    assert frame(b"") == (-1, b"")
