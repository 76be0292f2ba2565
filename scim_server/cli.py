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
from .limits import QUERY_TIMEOUT, REQUEST_TIMEOUT

COMMANDS = "joyn_scim.commands"


def _serve(args: argparse.Namespace) -> int:
    from .server import serve
    return serve(args)


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"JOYN_SCIM_{name}", default)


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
                   help="SQLite database file (default: <data dir>/scim.db) [JOYN_SCIM_DB]")
    env_tokens = _env("TOKEN_FILES")
    p.add_argument("--token-file", action="append", dest="token_files",
                   default=[t for t in (env_tokens or "").split(",") if t] or None,
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
    p.set_defaults(func=_serve)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="joyn-scim", description="Joyn FSM SCIM for Entra ID")
    parser.add_argument("--version", action="version", version=f"joyn-scim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _serve_parser(sub)
    for command in entry_points(group=COMMANDS):
        try:
            add = command.load()
        except Exception as e:  # another package's commands must never stop `serve`
            print(f"joyn-scim: the {command.name} commands are unavailable: {e}",
                  file=sys.stderr)
            continue
        add(sub)  # each adds its sub-parsers, with set_defaults(func=...)
    args = parser.parse_args(argv)
    return args.func(args)
