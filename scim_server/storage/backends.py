"""Which backend a `--db` names: a PostgreSQL URI (`postgresql://...`), else a SQLite file
(a path, or `sqlite:<path>`). One place, so `serve` and `storage copy` read `--db` alike."""

from __future__ import annotations

from ..limits import QUERY_TIMEOUT
from . import Storage


def is_postgres(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def sqlite_path(db: str) -> str:
    return db.removeprefix("sqlite:")


def storage_for(db: str, *, events: bool | None = False, durability: str = "normal",
                query_timeout: float = QUERY_TIMEOUT) -> Storage:
    """The backend `db` names, not opened yet (`await storage.open()`)."""
    if is_postgres(db):
        # Imported here: a SQLite server never loads psycopg.
        from .postgres import PostgresStorage
        return PostgresStorage(db, events=events, query_timeout=query_timeout)
    from .sqlite import SqliteStorage
    return SqliteStorage(sqlite_path(db), durability.upper(), query_timeout, events=events)


def describe(db: str) -> str:
    """`db` as a log line may show it: a URI without its password."""
    if is_postgres(db):
        from .postgres import redact
        return redact(db)
    return sqlite_path(db)
