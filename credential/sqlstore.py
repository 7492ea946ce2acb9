"""What the office store and the ledger both ask of SQLite and of their Alembic migrations.

Kept in one place so the two stores cannot drift apart on durability (WAL, a full sync on
commit) or on how they meet a database written by a newer release.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from alembic.config import Config
from alembic.script import ScriptDirectory

from credential.errors import StoreError

__all__ = ["known_revisions", "refuse_newer_release", "sqlite_settings"]


def sqlite_settings(dbapi_conn: Any, _record: Any) -> None:
    """A new SQLite connection's settings (a SQLAlchemy "connect" listener): write-ahead
    logging so readers never wait for a writer, a full sync so a commit survives a power cut,
    and no transaction opened by pysqlite behind our back (each store's "begin" hook emits its
    own BEGIN, IMMEDIATE for writes)."""
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
    except UnicodeDecodeError as exc:
        # SQLite's "malformed schema" error quotes the schema's text; a damaged byte there
        # fails the decoding of the message itself. Said as the damage it is (each store
        # types sqlite3's DatabaseError), not as an unexpected error to report.
        raise sqlite3.DatabaseError("database disk image is malformed") from exc
    finally:
        cur.close()


def known_revisions(cfg: Config) -> tuple[str, ...]:
    """The schema revisions these migrations know, oldest first."""
    return tuple(reversed([s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()]))


def refuse_newer_release(cfg: Config, current: str | None, *, what: str) -> None:
    """Refuse a schema revision these migrations do not know: a newer release wrote it.
    Alembic itself would fail with "can't locate revision", which reads as a bug; the operator
    needs that release back (or a backup made by this one)."""
    if current is not None and current not in known_revisions(cfg):
        raise StoreError("store_newer_release", what=what, revision=current)
