"""What an append token bound to one city's office may write on the public record.

A token is handed to one office; leaked, an unbound one could write for any city: register
keys under another city's name, mark its keys compromised (its counters then refuse its
residents' genuine passports once the bundle follows, and its audits fail), change its
status lists. Bound (``ledger token add --root``, from the office's root file: city, country,
code), a token writes only what is that office's:

- ``key_registered``: its city and country;
- ``bundle_published``: its city;
- ``key_rotated``, ``key_compromised``: keys its city registered (on the record, or earlier
  in the same batch);
- ``status_changed``: its own status lists (``CODE.N``, as the office names them);
- ``credential_issued``: a salted commitment, no one's in particular.

Which city registered each key is kept as records are appended (``ledger_kids``): one lookup
per key, not a pass over the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select

from credential.errors import LedgerError
from ledger import schema as t
from ledger.entries import (
    BundlePublished,
    Entry,
    KeyCompromised,
    KeyRegistered,
    KeyRotated,
    StatusChanged,
    decode_record,
    type_cbor,
)

__all__ = ["Scope", "check_scope", "register_kids", "register_kids_of_leaves"]


@dataclass(frozen=True)
class Scope:
    """One city's office, as its root file names it."""

    city: str
    country: str
    code: str


def check_scope(conn: Connection, client: str, scope: Scope, batch: Sequence[Entry]) -> None:
    """Refuse (``ledger_token_out_of_scope``, naming the first entry) a batch that writes
    anything not ``scope``'s; read under the append's lock, in its transaction."""
    ours = (scope.city, scope.country)
    batch_kids = {e.kid for e in batch if isinstance(e, KeyRegistered)
                  and (e.city, e.country) == ours}

    def own_key(kid: str) -> bool:
        if kid in batch_kids:
            return True
        row = conn.execute(select(t.kids.c.city, t.kids.c.country)
                           .where(t.kids.c.kid == kid)).first()
        return row is not None and (str(row[0]), str(row[1])) == ours

    for index, entry in enumerate(batch):
        if isinstance(entry, KeyRegistered):
            allowed = (entry.city, entry.country) == ours
        elif isinstance(entry, BundlePublished):
            allowed = entry.city == scope.city
        elif isinstance(entry, KeyRotated):
            allowed = own_key(entry.kid) and own_key(entry.replaces)
        elif isinstance(entry, KeyCompromised):
            allowed = own_key(entry.kid)
        elif isinstance(entry, StatusChanged):
            allowed = entry.list.startswith(f"{scope.code}.")
        else:
            allowed = True
        if not allowed:
            raise LedgerError("ledger_token_out_of_scope", client=client, index=index,
                              type=entry.TYPE, city=scope.city, office_code=scope.code)


def register_kids(conn: Connection, batch: Sequence[Entry], start: int) -> None:
    """Keep the city of each key first registered in ``batch`` (appended from ``start``)."""
    for offset, entry in enumerate(batch):
        if isinstance(entry, KeyRegistered):
            _register(conn, entry, start + offset)


_MARKER = type_cbor(KeyRegistered.TYPE)


def register_kids_of_leaves(conn: Connection, leaves: Sequence[bytes], start: int) -> None:
    """``register_kids`` for records copied verbatim (a mirror, whose database may one day
    serve as its log's own); only records that can be registrations are decoded."""
    for offset, leaf in enumerate(leaves):
        if _MARKER in leaf:
            entry = decode_record(leaf).entry
            if isinstance(entry, KeyRegistered):
                _register(conn, entry, start + offset)


def _register(conn: Connection, entry: KeyRegistered, seq: int) -> None:
    # the first registration of a kid is its city's (a second one is a finding of
    # ``check-bundle``, not a new owner)
    known = conn.execute(select(t.kids.c.kid).where(t.kids.c.kid == entry.kid)).first()
    if known is None:
        conn.execute(insert(t.kids).values(kid=entry.kid, city=entry.city,
                                           country=entry.country, seq=seq))
