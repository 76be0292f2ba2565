"""Start-up: resolve options, prepare the data folder and token, run uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import sys

import uvicorn

from .app import AppSettings, create_app
from .auth import TokenStore
from .connection import protocol
from .durations import parse_duration
from .events.keys import SigningKeys, generate_key_file
from .events.sets import EVENT_URIS
from .events.stream import EventSettings, EventStream
from .logs import setup_logging
from .storage.backends import describe, is_postgres, storage_for

log = logging.getLogger("scim_server")


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_exit=None) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig, frame) -> None:
        # Long polls end now, so the graceful shutdown does not wait out their 30 s.
        super().handle_exit(sig, frame)
        if self.on_exit is not None:
            asyncio.get_event_loop().call_soon_threadsafe(self.on_exit)

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn re-raises SIGTERM once its graceful shutdown is done, so a clean stop would
        # end with status -15; a completed graceful shutdown exits 0 here instead.
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def normalize_base_path(path: str) -> str:
    path = "/" + path.strip().strip("/")
    return path if path != "/" else ""


def generate_token_file(path: str) -> str:
    """Write a new 256-bit random token to `path` (mode 0600) and return it."""
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token


def _event_stream(args: argparse.Namespace, tenant_url: str) -> EventStream:
    """The stream's delivery side from the --events-* options; a signing key is generated in
    the data folder when none is given (a server started by hand)."""
    key_files = args.events_key_files
    if not key_files:
        os.makedirs(args.data_dir, exist_ok=True)
        key_files = [os.path.join(args.data_dir, "events-signing-key.pem")]
        if not os.path.exists(key_files[0]):
            generate_key_file(key_files[0])
    try:
        retention = parse_duration(args.events_retention).total_seconds()
    except ValueError as e:
        raise SystemExit(f"joyn-scim serve: --events-retention: {e} (e.g. 336h)") from None
    settings = EventSettings(
        token_files=tuple(args.events_token_files), signing_key_files=tuple(key_files),
        audience=args.events_audience, push_url=args.events_push_url,
        push_authorization_file=args.events_push_authorization_file,
        push_timeout=args.events_push_timeout, retention_age=retention,
        retention_count=args.events_retention_count)
    keys = SigningKeys(key_files)
    if keys.signer() is None:
        log.warning("no event signing key is loaded: polls and pushes fail until one is",
                    extra={"signing_key_files": key_files})
    log.info("event stream on", extra={"delivery": "push" if settings.push_url else "poll",
                                       "audience": settings.audience})
    return EventStream(settings, tenant_url, keys)


def serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    base_path = normalize_base_path(args.base_path)
    if not (args.db and args.token_files):
        os.makedirs(args.data_dir, exist_ok=True)
    db = args.db or os.path.join(args.data_dir, "scim.db")
    token_files = args.token_files or [os.path.join(args.data_dir, "token")]
    generated = None
    if not args.token_files and not os.path.exists(token_files[0]):
        generated = generate_token_file(token_files[0])
    tokens = TokenStore(token_files)
    if tokens.count == 0:
        log.warning("no bearer token is configured: every SCIM request will get 401",
                    extra={"token_files": token_files})

    wildcard = args.host in ("0.0.0.0", "::", "")  # noqa: S104 - naming it, not binding it
    display_host = "127.0.0.1" if wildcard else args.host
    tenant_url = args.public_url or f"http://{display_host}:{args.port}{base_path}"
    if generated:
        # Printed once, to the terminal of the person who started the server; never logged.
        sys.stdout.write(
            "\nA bearer token was generated for this server.\n"
            f"  Tenant URL:   {tenant_url}\n"
            f"  Secret Token: {generated}\n"
            f"  (stored in {token_files[0]}; it is not shown again)\n\n"
            f"  curl -H 'Authorization: Bearer <token>' {tenant_url}/Users\n\n")
        sys.stdout.flush()

    events = _event_stream(args, tenant_url) if args.events_token_files else None
    settings = AppSettings(base_path=base_path, public_url=args.public_url,
                           max_body_bytes=args.max_body_bytes, max_results=args.max_results,
                           event_uris=EVENT_URIS if events else ())
    app = create_app(settings, lambda: storage_for(db, events=bool(events),
                                                   durability=args.durability,
                                                   query_timeout=args.query_timeout),
                     tokens, events=events)
    log.info("starting", extra={"listen": f"{args.host}:{args.port}", "base_path": base_path,
                                "database": describe(db), "tenant_url": tenant_url,
                                "backend": "postgresql" if is_postgres(db) else "sqlite"})
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_config=None, access_log=False,
        http=protocol(args.request_timeout),
        proxy_headers=True, forwarded_allow_ips=args.forwarded_allow_ips,
        timeout_graceful_shutdown=25, server_header=False, lifespan="on")
    _Server(config, events.closing.set if events else None).run()
    log.info("stopped")
    return 0
