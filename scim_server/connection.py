"""A deadline for receiving each request: uvicorn's httptools protocol, plus one timer.

uvicorn times out only idle keep-alive connections after a response (`timeout_keep_alive`);
nothing bounds a connection that sends nothing, part of a request line, headers without the
final blank line, or part of a declared body, so each such client held a connection for as
long as it liked (uvicorn issue #157, open since 2018). Granian 2.8 has a header read timeout,
but served our app at 1,480-1,720 requests/s against uvicorn's 2,270-2,350 (the indexed
userName filter, 8 connections, the same machine and minute, both cores partly busy), so the
timer is added to uvicorn instead, as xinference does it: a subclass of uvicorn's protocol
class, whose hooks are the parser's callbacks. Pinned to uvicorn 0.x (pyproject).

The deadline starts when a connection opens and when the first byte of each next request is
parsed, and ends when the request (headers and body) is complete. When it passes, the client
gets a SCIM 408 and the connection closes; a response already started is cut short instead.
Time spent by the server (the handler, the response) does not count.

The protocol also sends each response's status line, headers and body in one write
(`_CoalescingTransport`).
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits import REQUEST_TIMEOUT
from .schemas import ERROR


def _closing_response(status: bytes, error: dict) -> bytes:
    """A whole HTTP/1.1 response with a SCIM error body, for the protocol to write itself."""
    body = orjson.dumps({"schemas": [ERROR], **error})
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/scim+json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
            + body)


class _CoalescingTransport:
    """The connection's transport, with the writes of one response sent as one.

    uvicorn writes a response's head, then its body: two sends, each a trip through the
    kernel's TCP path (strace: 2 writes per GET). Writes are held and sent together when the
    response is complete, when the connection closes, or at the latest at the end of this turn
    of the event loop, so a response streamed in parts is not held back."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._pending is None:
            self._pending = [data]
            self._loop.call_soon(self.flush)
        else:
            self._pending.append(data)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._transport.is_closing():
            self._transport.write(b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:  # asked after every response: not through __getattr__
        return self._transport.is_closing()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline per request (see the module)."""

    request_timeout = REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm()  # a connection that never sends a byte is held no longer than one request

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        self.transport.flush()  # type: ignore[attr-defined]
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self.request_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_closing_response(b"408 Request Timeout", {
                "status": "408",
                "detail": f"The request did not arrive within {self.request_timeout:g} s"}))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers a request its parser refuses in plain text; a SCIM client gets JSON.
        self.transport.write(_closing_response(b"400 Bad Request", {
            "status": "400", "scimType": "invalidSyntax",
            "detail": f"{msg} (the HTTP parser refused it)"}))
        self.transport.close()


def protocol(request_timeout: float) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn.Config(http=...), with this deadline."""
    return type("DeadlineProtocol", (DeadlineProtocol,), {"request_timeout": request_timeout})
