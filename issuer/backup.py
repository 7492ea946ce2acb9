"""Backing up an office store and making an office again from a backup.

A backup is SQLite's online backup of ``issuer.db``: one consistent snapshot, taken while other
processes keep issuing, written beside its target and renamed into place once checked (it opens,
passes SQLite's integrity check, and its root key unseals with the office passphrase). Keys stay
sealed inside it, as in the store.

A restore can only make a new office home, never overwrite one. Whatever the office signed after
the backup is unknown to the copy: it could neither revoke those credentials nor keep their
status indices from being drawn again. So the key active at the backup is marked compromised
from the backup's time (counters refuse what it signed later; those residents are issued again)
and a new key takes over, both on the public record.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from credential.errors import StoreError
from credential.keys import b64url, unseal
from issuer.store import BUSY_TIMEOUT_S, IssuerStore, keys, meta

__all__ = ["restore", "take"]


def take(store: IssuerStore, target: Path, passphrase: str) -> int:
    """Write a backup of ``store`` to ``target`` (never over an existing file); returns how many
    credentials it holds."""
    store.root_signing_key(passphrase)  # only the office takes a copy of its store
    if target.exists():
        raise StoreError("backup_exists", path=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        _copy_database(store.path, partial)
        with contextlib.closing(sqlite3.connect(partial)) as db, db:  # when it was taken
            db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES ('backup_taken', ?)",
                       (str(int(time.time())),))
        count = _checked_copy(partial, passphrase)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return count


def restore(source: Path, home: Path, passphrase: str) -> tuple[int, str]:
    """Make ``home`` an office from the backup ``source``; returns (credentials it holds, the
    kid of the key retired as compromised from the backup's time)."""
    if (home / "issuer.db").exists():
        raise StoreError("issuer_exists", home=str(home))
    if not source.is_file():
        raise StoreError("backup_unreadable", path=str(source), reason="not a file")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    partial = home / ".issuer.db.partial"
    try:
        _copy_database(source, partial)
        count = _checked_copy(partial, passphrase)
        os.replace(partial, home / "issuer.db")
    finally:
        partial.unlink(missing_ok=True)
    _fsync_dir(home)
    store = IssuerStore.open(home)
    with store.engine.connect() as db:
        taken = db.execute(sa.select(meta.c.v).where(meta.c.k == "backup_taken")).scalar()
        old = b64url(db.execute(sa.select(keys.c.kid).where(
            (keys.c.role == "office") & keys.c.active)).scalar_one())
    store.add_office_key(passphrase)
    store.mark_compromised(old, int(taken or time.time()), passphrase)
    return count, old


def _copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: one consistent snapshot, whatever other processes write."""
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError("backup_unreadable", path=str(source), reason=str(exc)[:200]) from None
    with open(target, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(target, 0o600)


def _checked_copy(path: Path, passphrase: str) -> int:
    """That a copied office store is whole and ours: SQLite's integrity check, and the root key
    unseals with the passphrase. Returns its number of credentials."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            verdict = db.execute("PRAGMA integrity_check").fetchone()[0]
            sealed = db.execute("SELECT sealed FROM keys WHERE role = 'root'").fetchone()
            count = int(db.execute("SELECT count(*) FROM credentials").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise StoreError("backup_unreadable", path=str(path), reason=str(exc)[:200]) from None
    if verdict != "ok" or sealed is None:
        raise StoreError("backup_unreadable", path=str(path),
                         reason=verdict if verdict != "ok" else "no root key")
    unseal(sealed[0], passphrase)  # passphrase_wrong: the copy is someone else's, or another key
    return count


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
