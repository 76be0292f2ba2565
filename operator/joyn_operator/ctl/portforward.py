"""One HTTP request to a port of a pod, through the API server's port-forward (what `kubectl
port-forward` does), for `kubectl joyn events`.

Why not the API server's service proxy (/api/v1/namespaces/NS/services/NAME:PORT/proxy/...):
the API server authenticates the caller by the request's Authorization header and then deletes
that header, so the proxied request can never carry the receiver's `Authorization: Bearer`
token that the server's /events endpoints ask for. The proxy also connects from the API
server's own address, which the tenant's NetworkPolicy does not admit. A port-forward needs
neither: the request is plain HTTP with our own headers, inside the pod's network namespace
(the kubelet dials the port there), so no NetworkPolicy is in its way; it needs the permission
`create pods/portforward`.

The WebSocket protocol is the kubelet's `v4.channel.k8s.io` for port forwarding: each message
starts with a channel byte, 0 for the forwarded port's data and 1 for its errors, and the first
message on each channel holds the port number (2 bytes, little endian). The HTTP response is
read with h11 (httpx's HTTP/1.1 parser), which undoes the chunked encoding of a stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import h11
from kubernetes_asyncio.stream import WsApiClient

from ..kube import Kube, KubeError, path

DATA, ERROR = 0, 1
PROTOCOL = "v4.channel.k8s.io"


class ForwardError(Exception):
    """The kubelet could not reach the port, or the connection ended early."""


def request_bytes(target: str, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 GET of `target` (path and query), the connection closed after it."""
    conn = h11.Connection(h11.CLIENT)
    return conn.send(h11.Request(method="GET", target=target, headers=[
        ("Host", "localhost"), ("Connection", "close"), *headers.items()]))


class Response:
    """An HTTP response read from the forwarded bytes as they come (h11 does the framing)."""

    def __init__(self) -> None:
        self._conn = h11.Connection(h11.CLIENT)
        # The request went out on the WebSocket, not through h11: let h11 expect the answer.
        self._conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        self._conn.send(h11.EndOfMessage())
        self.status: int | None = None
        self.ended = False

    def feed(self, data: bytes) -> list[bytes]:
        """The body bytes `data` completes; sets `status` once the head is read."""
        self._conn.receive_data(data)
        body = []
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as e:
                raise ForwardError(f"the server's answer is not HTTP: {e}") from None
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return body
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.ended = True
                return body

    def close(self) -> None:
        """The connection closed: fine after a whole message, else the answer was cut."""
        if not self.ended:
            self._conn.receive_data(b"")
            try:
                while (event := self._conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                    if isinstance(event, h11.EndOfMessage):
                        self.ended = True
                        return
            except h11.RemoteProtocolError:
                pass
            raise ForwardError("the connection closed before the answer ended")


def frame(payload: bytes) -> tuple[int, bytes]:
    """(channel, data) of one WebSocket message."""
    return (payload[0], payload[1:]) if payload else (-1, b"")


async def get(kube: Kube, namespace: str, pod: str, port: int, target: str,
              headers: dict[str, str]) -> AsyncIterator[tuple[int, bytes]]:
    """GET `target` on `port` of `pod`: yields (status, body bytes) as they arrive, the status
    being the HTTP response's (the same in every item). Raises KubeError when the API server
    refuses the port-forward, ForwardError when the kubelet cannot reach the port."""
    cfg = await kube.login.refresh()
    url = f"{path('Pod', namespace, pod)}/portforward"
    api = WsApiClient(configuration=cfg, heartbeat=30)
    try:
        try:
            connect = await api.call_api(
                url, "GET", query_params=[("ports", str(port))],
                header_params={"sec-websocket-protocol": PROTOCOL},
                auth_settings=["BearerToken"], _preload_content=False)
            ws = await connect.__aenter__()
        except aiohttp.WSServerHandshakeError as e:
            raise KubeError("GET", url, e.status, e.message) from None
        try:
            response = Response()
            seen_port = {DATA: False, ERROR: False}
            sent = False
            async for msg in ws:
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    break
                data = msg.data if isinstance(msg.data, bytes) else msg.data.encode()
                channel, data = frame(data)
                if channel in seen_port and not seen_port[channel]:
                    seen_port[channel] = True  # the port number, once per channel
                    data = data[2:]
                    if all(seen_port.values()) and not sent:
                        await ws.send_bytes(bytes([DATA]) + request_bytes(target, headers))
                        sent = True
                if channel == ERROR and data:
                    raise ForwardError(data.decode(errors="replace").strip())
                if channel == DATA and data:
                    for chunk in response.feed(data):
                        yield response.status or 0, chunk
                    if response.ended:
                        return
            response.close()
        finally:
            await connect.__aexit__(None, None, None)
    finally:
        await api.close()
