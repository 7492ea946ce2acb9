"""What an append token bound to one city's office may write on the public record.

A token is handed to one office; leaked, an unbound one could write for any city: register
keys under another city's name, mark its keys compromised (its counters then refuse its
residents' genuine passports once the bundle follows, and its audits fail), change its
status lists. Bound (``ledger token add --root``, from the office's root file: city, country,
code), a token writes only what is that office's:

- ``key_registered``: its city and country, of a key it shows it holds (``check_possession``),
  whose kid no other city registered first;
- ``bundle_published``: its city;
- ``key_rotated``, ``key_compromised``: keys its city registered (on the record, or earlier
  in the same batch);
- ``status_changed``: its own status lists (``CODE.N``, as the office names them: ``N``
  digits, the code whole);
- ``credential_issued``: a salted commitment, no one's in particular.

Which city registered each key is kept as records are appended (``ledger_kids``): one lookup
per key, not a pass over the log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
from sqlalchemy import Connection, insert, select

from credential.errors import LedgerError, MalformedInput
from credential.keys import b64url, kid_for, unb64url
from ledger import schema as t
from ledger.entries import (
    BundlePublished,
    Entry,
    KeyCompromised,
    KeyRegistered,
    KeyRotated,
    StatusChanged,
    check_key_names,
    possession_message,
    registration_of,
    type_cbor,
)

__all__ = ["POSSESSION_HEADER", "Scope", "check_possession", "check_scope", "parse_possession",
           "register_kids", "register_kids_of_leaves"]


@dataclass(frozen=True)
class Scope:
    """One city's office, as its root file names it."""

    city: str
    country: str
    code: str

    @classmethod
    def of_root(cls, city: str, country: str, code: str) -> Scope:
        """The scope a root file names, its city and country as the records it is compared
        with hold them (``root_invalid`` otherwise): a hand-edited file ("MEX", a city of 200
        characters) would bind no record, and a database server refuses such columns."""
        try:
            check_key_names(city, country)
        except MalformedInput as exc:
            raise MalformedInput("root_invalid", reason=exc.message["en"]) from None
        return cls(city, country, code)


def check_scope(conn: Connection, client: str, scope: Scope, batch: Sequence[Entry]) -> None:
    """Refuse (``ledger_token_out_of_scope``, naming the first entry) a batch that writes
    anything not ``scope``'s; read under the append's lock, in its transaction."""
    ours = (scope.city, scope.country)
    registered_here: set[str] = set()  # kids new to the record, registered earlier in the batch

    def owner(kid: str) -> tuple[str, str] | None:
        row = conn.execute(select(t.kids.c.city, t.kids.c.country)
                           .where(t.kids.c.kid == kid)).first()
        return None if row is None else (str(row[0]), str(row[1]))

    def own_key(kid: str) -> bool:
        # the record's first registration decides: a kid another city registered stays its,
        # whatever this batch registers again (and only what came before in it counts)
        known = owner(kid)
        return known == ours if known is not None else kid in registered_here

    for index, entry in enumerate(batch):
        if isinstance(entry, KeyRegistered):
            known = owner(entry.kid)
            if known not in (None, ours) and (entry.city, entry.country) == ours:
                # said as what it is: the office did nothing wrong, someone was there first
                k = t.kids.c
                seq = conn.execute(select(k.seq).where(k.kid == entry.kid)).scalar()
                raise LedgerError("ledger_token_key_taken", client=client, index=index,
                                  kid=entry.kid, city=known[0], country=known[1], seq=seq)
            allowed = (entry.city, entry.country) == ours
            if allowed:
                registered_here.add(entry.kid)
        elif isinstance(entry, BundlePublished):
            allowed = entry.city == scope.city
        elif isinstance(entry, KeyRotated):
            allowed = own_key(entry.kid) and own_key(entry.replaces)
        elif isinstance(entry, KeyCompromised):
            allowed = own_key(entry.kid)
        elif isinstance(entry, StatusChanged):
            # the whole name: a city code may hold dots, and "MX." begins "MX.TEC.1" too
            code, _, number = entry.list.rpartition(".")
            allowed = code == scope.code and number.isascii() and number.isdigit()
        else:
            allowed = True
        if not allowed:
            raise LedgerError("ledger_token_out_of_scope", client=client, index=index,
                              type=entry.TYPE, city=scope.city, office_code=scope.code)


# The request header carrying each registration's possession proof: ``0=<base64url>, 3=…``,
# by the entry's place in the batch. A header, not a body field: a node of an earlier release
# ignores it, where it refuses a body with a field it does not know.
POSSESSION_HEADER = "Key-Possession"
_PROOF = re.compile(r"\s*([0-9]{1,4})=([A-Za-z0-9_-]{86})\s*")


def parse_possession(header: str) -> dict[int, bytes]:
    """The proofs a ``Key-Possession`` header holds, by entry index (``ledger_bad_possession``
    for anything else: a header is bounded by the server, each item here)."""
    proofs: dict[int, bytes] = {}
    for item in header.split(",") if header.strip() else []:
        match = _PROOF.fullmatch(item)
        if match is None or int(match[1]) in proofs:
            raise MalformedInput("ledger_bad_possession")
        try:
            proofs[int(match[1])] = unb64url(match[2], length=64, what="proof")
        except MalformedInput:  # 86 characters that are no base64url spelling of 64 bytes
            raise MalformedInput("ledger_bad_possession") from None
    return proofs


def check_possession(client: str, scope: Scope, batch: Sequence[Entry],
                     proofs: dict[int, bytes]) -> None:
    """A token bound to an office registers only keys that office holds: each key_registered
    names the kid of its own public key (``credential.keys.kid_for``) and comes with that key's
    signature of it (``possession_message``), which pasaporte's issuer sends. Without, a leaked
    token took another city's kid (public in its bundle and its passports' QR codes before the
    office logged it) with a made-up or copied key, marked it compromised, and shut the
    office's own registration out (``ledger_token_key_taken``)."""
    for index, entry in enumerate(batch):
        if not isinstance(entry, KeyRegistered) or (entry.city, entry.country) != (
                scope.city, scope.country):
            continue  # (another city's: ``check_scope`` names it as that)
        proof = proofs.get(index)
        if proof is None:  # an office on an earlier release: upgrading it is the fix
            raise LedgerError("ledger_key_unproven", client=client, index=index, kid=entry.kid)
        ok = entry.kid == b64url(kid_for(entry.public_key))
        if ok:
            try:
                nacl.signing.VerifyKey(entry.public_key).verify(possession_message(entry),
                                                                proof)
            except (nacl.exceptions.BadSignatureError, ValueError):
                ok = False
        if not ok:  # another's kid, or a key not in hand: what a leaked token would send
            raise LedgerError("ledger_key_not_held", client=client, index=index, kid=entry.kid)


def register_kids(conn: Connection, batch: Sequence[Entry], start: int) -> None:
    """Keep the city of each key first registered in ``batch`` (appended from ``start``)."""
    for offset, entry in enumerate(batch):
        if isinstance(entry, KeyRegistered):
            _register(conn, entry.kid, entry.city, entry.country, start + offset)


_MARKER = type_cbor(KeyRegistered.TYPE)


def register_kids_of_leaves(conn: Connection, leaves: Sequence[bytes], start: int) -> None:
    """``register_kids`` for records copied verbatim (a mirror, whose database may one day
    serve as its log's own) or already on the record (migration 0006); only records that can
    be registrations are read, and only for the three fields kept."""
    for offset, leaf in enumerate(leaves):
        if _MARKER in leaf:
            found = registration_of(leaf)
            if found is not None:
                _register(conn, *found, start + offset)


def _register(conn: Connection, kid: str, city: str, country: str, seq: int) -> None:
    # the first registration of a kid is its city's (a second one is a finding of
    # ``check-bundle``, not a new owner)
    known = conn.execute(select(t.kids.c.kid).where(t.kids.c.kid == kid)).first()
    if known is None:
        conn.execute(insert(t.kids).values(kid=kid, city=city, country=country, seq=seq))
