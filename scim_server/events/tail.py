"""`joyn-scim events tail`: watch a tenant's stream from the command line, without consuming it.

It reads the server's `GET /events/tail` (NDJSON, one SET's claims a line) with the receiver's
credential and prints a line a change, or the claims as they are with `-o json`. `summary` is
also what `kubectl joyn events` prints, so both read alike.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from . import sets

_SHORT = {sets.CREATE: "create", sets.PUT: "put", sets.PATCH: "patch", sets.DELETE: "delete",
          sets.ACTIVATE: "activate", sets.DEACTIVATE: "deactivate", sets.RESYNC: "RESYNC"}


def summary(claims: dict) -> str:
    """One line: when, the stream position, what happened, to which resource, its version."""
    when = datetime.fromtimestamp(claims.get("iat", 0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    events = claims.get("events", {})
    what = "+".join(_SHORT.get(uri, uri) for uri in events)
    if sets.RESYNC in events:
        detail = events[sets.RESYNC]
        return (f"{when}  RESYNC  events up to {detail.get('through')} lost "
                f"({detail.get('reason')}): the receiver must take a snapshot")
    sub = claims.get("sub_id", {})
    version = next((p.get("version") for p in events.values() if p.get("version")), "")
    return f"{when}  txn {claims.get('txn', '-'):>8}  {what:<18} {sub.get('uri', '?')}  {version}"


def add_parser(sub) -> None:
    p = sub.add_parser("events", help="the tenant's event stream")
    cmds = p.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    t = cmds.add_parser("tail", help="print the stream's events as they commit (consumes "
                                     "nothing)")
    t.add_argument("--url", default="http://127.0.0.1:8080",
                   help="the server (its own address, not the Tenant URL)")
    t.add_argument("--token-file", required=True, help="file holding the receiver credential")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    t.add_argument("--after", type=int, default=0, help="start after this stream position")
    t.add_argument("-o", "--output", choices=["text", "json"], default="text")
    t.set_defaults(func=tail)


def tail(args: argparse.Namespace) -> int:
    import httpx  # only this command needs it

    with open(args.token_file) as f:
        token = f.readline().strip()
    params = {"after": str(args.after), **({"follow": "1"} if args.follow else {})}
    try:
        with httpx.stream("GET", args.url.rstrip("/") + "/events/tail", params=params,
                          headers={"Authorization": f"Bearer {token}"},
                          timeout=httpx.Timeout(10.0, read=None)) as r:
            if r.status_code != 200:
                r.read()
                print(f"joyn-scim events tail: {r.status_code}: {r.text[:300]}",
                      file=sys.stderr)
                return 1
            for line in r.iter_lines():
                if not line:
                    continue  # the server's heartbeat
                value = json.loads(line)
                if args.output == "json":
                    print(line, flush=True)
                elif "missed" in value:
                    print(f"... some events were not shown: {value['missed']}", flush=True)
                else:
                    print(summary(value.get("gap", value)), flush=True)
    except httpx.HTTPError as e:
        print(f"joyn-scim events tail: {args.url}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
