"""`helm test`'s check, run in a pod of the chart: the JoynScimTenant API is served, and the
operator answers on its health port.

The operator is reached at its Service's ready endpoints (pod IPs, from the EndpointSlices)
rather than the Service's name: that needs neither cluster DNS nor kube-proxy, and a pod that
is not Ready is no answer.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request

from . import GROUP, PLURAL, VERSION
from .kube import Kube
from .login import Login


async def check(namespace: str, service: str, port_name: str = "health") -> list[str]:
    """What is wrong; empty when all is well."""
    kube = Kube(Login())
    problems = []
    try:
        api = await kube.get(f"/apis/{GROUP}/{VERSION}")
        if not api or PLURAL not in {r.get("name") for r in api.get("resources") or []}:
            problems.append(f"{PLURAL}.{GROUP}/{VERSION} is not served: is the CRD installed?")
        slices = await kube.list(f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/"
                                 "endpointslices", f"kubernetes.io/service-name={service}")
    finally:
        await kube.close()
    targets = [(address, port["port"]) for s in slices
               for port in s.get("ports") or [] if port.get("name") == port_name
               for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")
               for address in e.get("addresses") or []]
    if not targets:
        problems.append(f"Service {namespace}/{service} has no ready endpoint: is the operator "
                        "running and Ready?")
    for address, port in targets:
        host = f"[{address}]" if ":" in address else address
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=10) as r:
                if r.status != 200:
                    problems.append(f"{host}:{port}/healthz answered {r.status}")
        except OSError as e:
            problems.append(f"{host}:{port}/healthz: {e}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m joyn_operator.selftest", description=__doc__)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--service", required=True)
    args = ap.parse_args(argv)
    problems = asyncio.run(check(args.namespace, args.service))
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if not problems:
        print(f"ok: {PLURAL}.{GROUP} is served and {args.service} answers")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
