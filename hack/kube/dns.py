"""The test cluster's DNS: `<service>.<namespace>.svc.<domain>` to the Service's ClusterIP, as a
cluster's DNS add-on answers it, so a pod reaches a Service by its name (a CloudNativePG
Cluster's `<cluster>-rw`, as its `-app` Secret names it) the way it would on a real cluster.

Hand-written on the standard library rather than CoreDNS: CoreDNS is one more large build from
the module proxy for one record type, while this is a few dozen lines of RFC 1035 over UDP. It
answers A queries for Services (looked up in the API server, a few seconds' cache), NODATA for
other types of those names, and NXDOMAIN for everything else (the pods here have no way out of
the machine, so there is nothing to forward to). Run by cluster.py as a process of its own, on
the host's end of the node's link, which the kubelet gives pods as their nameserver.

    python dns.py --listen 10.218.N.1 --api https://10.218.N.1 --token-file T --ca-file C
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import struct
import time
import urllib.error
import urllib.request

TTL = 5  # seconds: a Service made or deleted is seen soon
A, AAAA, IN = 1, 28, 1
NOERROR, NXDOMAIN, NOTIMP = 0, 3, 4


def parse_question(packet: bytes) -> tuple[int, int, str, int, int]:
    """(id, flags, name, qtype, end of the question) of a query with one question."""
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("one question only")
    labels, i = [], 12
    while packet[i]:
        n = packet[i]
        labels.append(packet[i + 1:i + 1 + n].decode("ascii", "replace").lower())
        i += 1 + n
    qtype, _qclass = struct.unpack("!HH", packet[i + 1:i + 5])
    return qid, flags, ".".join(labels), qtype, i + 5


def answer(packet: bytes, rcode: int, addresses: list[str]) -> bytes:
    qid, flags, _name, _qtype, end = parse_question(packet)
    rd = flags & 0x0100
    header = struct.pack("!HHHHHH", qid, 0x8000 | 0x0400 | rd | rcode, 1, len(addresses), 0, 0)
    records = b"".join(struct.pack("!HHHIH", 0xC00C, A, IN, TTL, 4) + socket.inet_aton(a)
                       for a in addresses)
    return header + packet[12:end] + records


class Services:
    """ClusterIPs by (namespace, name), from the API server, kept TTL seconds."""

    def __init__(self, api: str, token: str, ca_file: str) -> None:
        self.api, self.token = api.rstrip("/"), token
        self.tls = ssl.create_default_context(cafile=ca_file)
        self.seen: dict[tuple[str, str], tuple[float, str | None]] = {}

    def address(self, namespace: str, name: str) -> str | None:
        now = time.monotonic()
        hit = self.seen.get((namespace, name))
        if hit and now - hit[0] < TTL:
            return hit[1]
        req = urllib.request.Request(f"{self.api}/api/v1/namespaces/{namespace}/services/{name}",
                                     headers={"Authorization": f"Bearer {self.token}"})
        try:
            with urllib.request.urlopen(req, context=self.tls, timeout=3) as r:
                ip = json.load(r)["spec"].get("clusterIP")
        except urllib.error.HTTPError:
            ip = None
        ip = ip if ip and ip != "None" else None  # a headless Service has no address
        self.seen[(namespace, name)] = (now, ip)
        return ip


def respond(packet: bytes, services: Services, domain: str) -> bytes:
    _qid, flags, name, qtype, _end = parse_question(packet)
    if flags & 0x7800:  # not a standard query
        return answer(packet, NOTIMP, [])
    suffix = f".svc.{domain}"
    parts = name[:-len(suffix)].split(".") if name.endswith(suffix) else []
    if len(parts) != 2:
        return answer(packet, NXDOMAIN, [])
    ip = services.address(parts[1], parts[0])
    if ip is None:
        return answer(packet, NXDOMAIN, [])
    return answer(packet, NOERROR, [ip] if qtype == A else [])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--api", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--ca-file", required=True)
    p.add_argument("--domain", default="cluster.local")
    args = p.parse_args()
    with open(args.token_file) as f:
        services = Services(args.api, f.read().strip(), args.ca_file)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, args.port))
    print(f"dns: serving *.svc.{args.domain} on {args.listen}:{args.port}", flush=True)
    while True:
        packet, client = sock.recvfrom(512)
        try:
            sock.sendto(respond(packet, services, args.domain), client)
        except (ValueError, IndexError, struct.error, OSError) as e:
            print(f"dns: dropped a query from {client[0]}: {e}", flush=True)


if __name__ == "__main__":
    main()
