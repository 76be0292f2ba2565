"""`joyn-scim`: the project's one console command. Sub-commands: `serve`, and those other
installed packages register in the `joyn_scim.commands` entry-point group (the operator's
`operator`): this package never imports the operator.

Every option of `serve` can also be set by an environment variable (shown in `--help`), which is
how the operator configures the bundled server in a pod.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import entry_points

from . import __version__
from .events import DEFAULT_AUDIENCE, DEFAULT_RETENTION, DEFAULT_RETENTION_COUNT
from .events.tail import add_parser as add_events_parser
from .limits import QUERY_TIMEOUT, REQUEST_TIMEOUT

COMMANDS = "joyn_scim.commands"


def _serve(args: argparse.Namespace) -> int:
    from .server import serve
    return serve(args)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"JOYN_SCIM_{name}", default)


def _env_list(name: str) -> list[str] | None:
    return [v for v in (_env(name) or "").split(",") if v] or None


def _serve_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="run the SCIM 2.0 server",
        description="Run the SCIM 2.0 server. With no options it keeps its data in "
                    "./joyn-scim-data/ and, on first start, generates a bearer token and prints "
                    "the Tenant URL and the token once.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default=_env("HOST", "127.0.0.1"),
                   help="address to listen on [JOYN_SCIM_HOST]")
    p.add_argument("--port", type=int, default=int(_env("PORT", "8080")),
                   help="port to listen on [JOYN_SCIM_PORT]")
    p.add_argument("--base-path", default=_env("BASE_PATH", "/scim/v2"),
                   help="SCIM base path; the Tenant URL is scheme://host[:port]<base path> "
                        "[JOYN_SCIM_BASE_PATH]")
    p.add_argument("--public-url", default=_env("PUBLIC_URL"),
                   help="the Tenant URL as clients see it, used in meta.location and the "
                        "start-up message (default: taken from each request) "
                        "[JOYN_SCIM_PUBLIC_URL]")
    p.add_argument("--data-dir", default=_env("DATA_DIR", "joyn-scim-data"),
                   help="folder for the default database and generated token "
                        "[JOYN_SCIM_DATA_DIR]")
    p.add_argument("--db", default=_env("DB"),
                   help="the database: a SQLite file (default: <data dir>/scim.db), or a "
                        "PostgreSQL URI, postgresql://user@host/db (the password from the "
                        "environment, PGPASSWORD or a .pgpass, rather than the command line) "
                        "[JOYN_SCIM_DB]")
    p.add_argument("--token-file", action="append", dest="token_files",
                   default=_env_list("TOKEN_FILES"),
                   help="file holding a valid bearer token; repeat for several (current and "
                        "previous). Re-read when it changes. Default: <data dir>/token, "
                        "generated if missing [JOYN_SCIM_TOKEN_FILES, comma-separated]")
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                   choices=["debug", "info", "warning", "error"],
                   help="log level [JOYN_SCIM_LOG_LEVEL]")
    p.add_argument("--max-body-bytes", type=int, default=int(_env("MAX_BODY_BYTES", "1048576")),
                   help="largest accepted request body; larger gets 413 "
                        "[JOYN_SCIM_MAX_BODY_BYTES]")
    p.add_argument("--max-results", type=int, default=int(_env("MAX_RESULTS", "1000")),
                   help="most resources in one list response (SPC filter.maxResults) "
                        "[JOYN_SCIM_MAX_RESULTS]")
    p.add_argument("--durability", choices=["normal", "full"],
                   default=_env("DURABILITY", "normal"),
                   help="SQLite synchronous mode: 'normal' survives any process crash, 'full' "
                        "also a power loss, at the cost of one fsync per write "
                        "[JOYN_SCIM_DURABILITY]")
    p.add_argument("--forwarded-allow-ips", default=_env("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                   help="proxies whose X-Forwarded-Proto/For headers are trusted, e.g. the "
                        "ingress controller ('*' for any) [JOYN_SCIM_FORWARDED_ALLOW_IPS]")
    p.add_argument("--request-timeout", type=float,
                   default=float(_env("REQUEST_TIMEOUT", str(REQUEST_TIMEOUT))),
                   help="seconds a client has to send one whole request (headers and body), "
                        "from its first byte or from connecting; then 408 and the connection "
                        "closes [JOYN_SCIM_REQUEST_TIMEOUT]")
    p.add_argument("--query-timeout", type=float,
                   default=float(_env("QUERY_TIMEOUT", str(QUERY_TIMEOUT))),
                   help="seconds one filter query may run; longer gets 400 tooMany "
                        "[JOYN_SCIM_QUERY_TIMEOUT]")
    e = p.add_argument_group(
        "event stream", "Every change as a signed RFC 9967 event, for the Joyn FSM application: "
        "poll POST /events (RFC 8936) or receive push (RFC 8935); public keys at GET "
        "/events/jwks.json, a bootstrap snapshot at GET /events/snapshot.")
    e.add_argument("--events-token-file", action="append", dest="events_token_files",
                   default=_env_list("EVENTS_TOKEN_FILES"),
                   help="file holding the receiver's credential (one token a line; repeat for "
                        "several); turns the stream on. Not Entra's token: each opens only its "
                        "own endpoints [JOYN_SCIM_EVENTS_TOKEN_FILES, comma-separated]")
    e.add_argument("--events-signing-key-file", action="append", dest="events_key_files",
                   default=_env_list("EVENTS_SIGNING_KEY_FILES"),
                   help="PEM file of EC keys: the first key of the first file signs, every key "
                        "is published (rotation); re-read when it changes. Default: <data "
                        "dir>/events-signing-key.pem, generated if missing "
                        "[JOYN_SCIM_EVENTS_SIGNING_KEY_FILES, comma-separated]")
    e.add_argument("--events-audience", default=_env("EVENTS_AUDIENCE", DEFAULT_AUDIENCE),
                   help="the SETs' aud claim: the receiver [JOYN_SCIM_EVENTS_AUDIENCE]")
    e.add_argument("--events-push-url", default=_env("EVENTS_PUSH_URL"),
                   help="push every SET to this URL (RFC 8935) instead of waiting for polls "
                        "[JOYN_SCIM_EVENTS_PUSH_URL]")
    e.add_argument("--events-push-authorization-file",
                   default=_env("EVENTS_PUSH_AUTHORIZATION_FILE"),
                   help="file holding the Authorization header value to push with, e.g. "
                        "'Bearer ...' [JOYN_SCIM_EVENTS_PUSH_AUTHORIZATION_FILE]")
    e.add_argument("--events-push-timeout", type=float,
                   default=float(_env("EVENTS_PUSH_TIMEOUT", "10")),
                   help="seconds one push may take [JOYN_SCIM_EVENTS_PUSH_TIMEOUT]")
    e.add_argument("--events-retention", default=_env("EVENTS_RETENTION", DEFAULT_RETENTION),
                   help="how long an unacknowledged event is kept (e.g. 336h); older ones are "
                        "discarded and the receiver told to resync [JOYN_SCIM_EVENTS_RETENTION]")
    e.add_argument("--events-retention-count", type=int,
                   default=int(_env("EVENTS_RETENTION_COUNT", str(DEFAULT_RETENTION_COUNT))),
                   help="most unacknowledged events kept; beyond it the oldest go, likewise "
                        "[JOYN_SCIM_EVENTS_RETENTION_COUNT]")
    p.set_defaults(func=_serve)


def _copy(args: argparse.Namespace) -> int:
    import asyncio

    from .storage.backends import describe, is_postgres, sqlite_path, storage_for
    from .storage.copy import CopyRefused, copy

    if not is_postgres(args.source) and not os.path.exists(sqlite_path(args.source)):
        print(f"joyn-scim storage copy: {args.source}: no such database file", file=sys.stderr)
        return 2

    async def run():
        src = storage_for(args.source, events=None)
        dst = storage_for(args.target, events=None)
        try:
            await src.open()
            await dst.open()
            return await copy(src, dst)
        finally:
            await dst.close()
            await src.close()

    try:
        done = asyncio.run(run())
    except CopyRefused as e:
        print(f"joyn-scim storage copy: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a database that cannot be opened: its kind, never its password
        print(f"joyn-scim storage copy: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"copied {done.users} users, {done.groups} groups, {done.memberships} memberships "
          f"and {done.events} unacknowledged events (stream at {done.position}) from "
          f"{describe(args.source)} to {describe(args.target)}")
    return 0


def _storage_parser(sub) -> None:
    p = sub.add_parser("storage", help="move a tenant's data between databases",
                       description="Work on a tenant's database while its server is stopped.")
    commands = p.add_subparsers(dest="storage_command", required=True, metavar="COMMAND")
    c = commands.add_parser(
        "copy", help="copy a tenant into an empty database",
        description="Copy every user, group and membership with its id, version and timestamps, "
                    "and the event stream where it stands (its unacknowledged events with their "
                    "seqs), from one database into an empty one, in one transaction. Stop or "
                    "pause the source's server first. A database is a SQLite file "
                    "(sqlite:<path> or a path) or a PostgreSQL URI (postgresql://...; give the "
                    "password by PGPASSWORD or a .pgpass, not on the command line).")
    c.add_argument("--from", dest="source", required=True, metavar="DB",
                   help="the database to copy from")
    c.add_argument("--to", dest="target", required=True, metavar="DB",
                   help="the empty database to copy into")
    c.set_defaults(func=_copy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="joyn-scim", description="Joyn FSM SCIM for Entra ID")
    parser.add_argument("--version", action="version", version=f"joyn-scim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    add_events_parser(sub)
    _storage_parser(sub)
    for command in entry_points(group=COMMANDS):
        try:
            # Each adds its sub-parsers, with set_defaults(func=...).
            command.load()(sub)
        except Exception as e:  # another package's commands must never stop `serve`
            print(f"joyn-scim: the {command.name} commands are unavailable: {e}",
                  file=sys.stderr)
    args = parser.parse_args(argv)
    return args.func(args)
