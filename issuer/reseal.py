"""Changing the office passphrase (``pasaporte issuer passphrase``): every secret the store seals
at rest (the root key, every office key, retired and compromised ones too, and the ledger's
append token) opened with the current passphrase, sealed anew under the new one, and written in
one transaction, so that a crash at any point leaves the home wholly under one passphrase or
wholly under the other, never some secrets under each.

A backup is a copy of the store as it was: one taken before the change keeps the passphrase of
its time, a restore of it asks for that one, and the restored office keeps it
(``issuer.backup``: the keys a restore adds are sealed under the passphrase it was given).
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
from dataclasses import dataclass, field

import sqlalchemy as sa

from credential.errors import MalformedInput, StoreError, UsageError
from credential.keys import b64url, seal, unb64url, unseal
from issuer.store import LEDGER_TOKEN, IssuerStore, keys, meta, waiting_turn

__all__ = ["Opened", "Secret", "open_all", "reseal"]

# Where a secret is kept: a key's role and kid (``keys.sealed``), or LEDGER_TOKEN and b"" for the
# ``meta`` row holding the ledger token.
Slot = tuple[str, bytes]
# How long the clean-up after the change waits for other writers (see ``_checkpoint``): it is
# best effort, and the change is already made.
CHECKPOINT_WAIT_S = 5.0


@dataclass(frozen=True)
class Secret:
    """One sealed secret as it was read from the store, and what it holds."""

    slot: Slot
    blob: bytes = field(repr=False)  # sealed, as stored
    value: bytes = field(repr=False)  # opened: a key's seed, the token's bytes


@dataclass(frozen=True)
class Opened:
    """Every secret of an office home, opened with ``passphrase``: the proof, taken before the
    new passphrase is asked for, that the current one is right for all of them."""

    passphrase: str = field(repr=False)
    secrets: tuple[Secret, ...]


def _stored(db: sa.Connection) -> dict[Slot, bytes]:
    """Every sealed secret of the store, the root key first (a wrong passphrase then costs one
    key derivation, not one per key, before it is refused)."""
    rows = db.execute(sa.select(keys.c.role, keys.c.kid, keys.c.sealed)
                      .order_by((keys.c.role != "root"), keys.c.valid_from, keys.c.kid)).all()
    found: dict[Slot, bytes] = {(str(role), bytes(kid)): bytes(sealed)
                                for role, kid, sealed in rows}
    token = db.execute(sa.select(meta.c.v).where(meta.c.k == LEDGER_TOKEN)).scalar()
    if token is not None:
        try:
            found[LEDGER_TOKEN, b""] = unb64url(str(token), what="ledger token")
        except MalformedInput:  # no passphrase opens it: said as for a damaged key
            raise StoreError("sealed_key_damaged") from None
    return found


def open_all(store: IssuerStore, passphrase: str) -> Opened:
    """Open every sealed secret of ``store`` with ``passphrase``: ``passphrase_wrong`` (or
    ``sealed_key_damaged``) at the first that does not open, nothing changed."""
    with store.engine.connect() as db:
        stored = _stored(db)
    return Opened(passphrase, tuple(Secret(slot, blob, unseal(blob, passphrase))
                                    for slot, blob in stored.items()))


def reseal(store: IssuerStore, opened: Opened, new: str) -> dict[str, int]:
    """Seal every secret of ``store`` under ``new`` instead of ``opened.passphrase``, all in one
    transaction; returns how many of each kind (``root``, ``office``, LEDGER_TOKEN).

    Sealing is slow (Argon2id, a tenth of a second each), so it is done before the store's write
    lock is taken, for the secrets as ``open_all`` read them; the transaction then holds the lock
    (and the turnstile, as every writer's does) only to read them again and write. A secret made
    or changed in between (another clerk's ``rotate``, ``issuer ledger``) is opened and sealed
    there, under the lock; one another change of passphrase sealed anew does not open with
    ``opened.passphrase``, and the whole change is refused (``passphrase_wrong``)."""
    if new == opened.passphrase:  # (the command refuses it earlier, read_new_passphrase)
        raise UsageError("passphrase_unchanged")
    fresh = {secret.slot: seal(secret.value, new) for secret in opened.secrets}
    was = {secret.slot: secret.blob for secret in opened.secrets}
    counts: collections.Counter[str] = collections.Counter()
    with store.engine.begin() as db:  # BEGIN IMMEDIATE: the store's write lock from here
        # The old sealed bytes are zeroed where the new ones do not overwrite them: the old
        # passphrase (a clerk who left knows it) must not open anything left in the file.
        # Left on for this pooled connection: it only costs zeroing what later writes free.
        db.exec_driver_sql("PRAGMA secure_delete = ON")
        for slot, blob in _stored(db).items():
            if was.get(slot) != blob:
                fresh[slot] = seal(unseal(blob, opened.passphrase), new)
            _write(db, slot, fresh[slot])
            counts[slot[0]] += 1
    _checkpoint(store)
    return dict(counts)


def _write(db: sa.Connection, slot: Slot, blob: bytes) -> None:
    """One secret, sealed anew, in its place (inside the caller's transaction)."""
    kind, kid = slot
    if kind == LEDGER_TOKEN:
        db.execute(meta.update().where(meta.c.k == LEDGER_TOKEN).values(v=b64url(blob)))
    else:
        db.execute(keys.update().where(keys.c.kid == kid).values(sealed=blob))


def _checkpoint(store: IssuerStore) -> None:
    """Move the change out of the write-ahead log into the database and empty the log: until
    then the log still holds the pages the secrets were written on before, sealed under the old
    passphrase. Best effort: should readers keep the log busy past ``CHECKPOINT_WAIT_S``, it is
    left for SQLite to overwrite as the office goes on (the change itself is made either way)."""
    # A connection of its own, outside a transaction (a checkpoint cannot run inside one), with
    # the turnstile held as every writer's (``waiting_turn``): a bulk run makes way for it.
    with contextlib.suppress(sqlite3.Error), waiting_turn(store.home), \
            contextlib.closing(sqlite3.connect(store.path, timeout=CHECKPOINT_WAIT_S,
                                               isolation_level=None)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
