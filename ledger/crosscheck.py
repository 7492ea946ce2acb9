"""Does a trust bundle match the public record? The check behind "no issuer key was slipped in".

Counters trust whatever office keys a city's signed bundle lists. The ledger is where both cities
(and anyone mirroring them) can see those keys. So, for a bundle and a copy of the log:

- every office key in the bundle must have a ``key_registered`` record with the same kid and
  the same public key, and no record may register that kid with another key;
- a ``key_compromised`` record must be reflected in the bundle (compromised since no later than
  the record says);
- the bundle itself must be on the record: a ``bundle_published`` record with its SHA-256.

Pure over the store's records: the CLI (``pasaporte ledger check-bundle``) prints the findings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from credential.bundle import TrustBundle
from credential.errors import PasaporteError
from credential.keys import b64url
from credential.times import parse_instant
from ledger.entries import (
    BundlePublished,
    KeyCompromised,
    KeyRegistered,
    decode_record,
    type_cbor,
)
from ledger.store import LedgerStore

__all__ = ["Finding", "PublicRecord", "check_bundle", "read_public_record"]

PAGE = 1000


@dataclass
class PublicRecord:
    """What the log says about keys and bundles, by kid and by digest (first index wins)."""

    size: int = 0
    registered: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    # kid: (index, since) of the record with the earliest time
    compromised: dict[str, tuple[int, int]] = field(default_factory=dict)
    published: dict[bytes, int] = field(default_factory=dict)  # bundle digest: index


@dataclass(frozen=True)
class Finding:
    """One discrepancy: a message code of ``schemas/messages/ledger.json`` and its values."""

    code: str
    params: dict[str, str | int]

    @property
    def message(self) -> dict[str, str]:
        return PasaporteError(self.code, **self.params).message


_WANTED = tuple(type_cbor(cls.TYPE) for cls in (KeyRegistered, KeyCompromised, BundlePublished))


def read_public_record(store: LedgerStore,
                       progress: Callable[[int, int], None] | None = None) -> PublicRecord:
    """One pass over the log, decoding only the records about keys and bundles."""
    record = PublicRecord(size=store.public_size())
    for start in range(0, record.size, PAGE):
        for index, leaf in store.entries(start, min(start + PAGE, record.size)):
            if not any(marker in leaf for marker in _WANTED):
                continue  # most records are issuances: skip them without decoding
            entry = decode_record(leaf).entry
            if isinstance(entry, KeyRegistered):
                record.registered.setdefault(entry.kid, []).append((index, entry.public_key))
            elif isinstance(entry, KeyCompromised):
                # the earliest time on the record counts, wherever it stands: an office that
                # learns later that its key leaked earlier publishes a second record, and a
                # bundle still carrying the first record's time passed, its counters accepting
                # what was signed in between
                since = parse_instant(entry.effective, "effective")
                if entry.kid not in record.compromised or since < record.compromised[entry.kid][1]:
                    record.compromised[entry.kid] = (index, since)
            elif isinstance(entry, BundlePublished):
                record.published.setdefault(entry.digest, index)
        if progress is not None:
            progress(min(start + PAGE, record.size), record.size)
    return record


def check_bundle(bundle: TrustBundle, signed: bytes, record: PublicRecord) -> list[Finding]:
    """Every way ``bundle`` (whose signed bytes are ``signed``) departs from the record."""
    findings: list[Finding] = []
    where: dict[str, str | int] = {"city": bundle.city, "version": bundle.version}
    if hashlib.sha256(signed).digest() not in record.published:
        findings.append(Finding("ledger_bundle_unpublished", where))
    for key in bundle.keys:
        kid = b64url(key.kid)
        about: dict[str, str | int] = {**where, "kid": kid, "office": key.office}
        seen = record.registered.get(kid, [])
        other = next((i for i, public in seen if public != key.public_key), None)
        if other is not None:
            findings.append(Finding("ledger_bundle_key_mismatch", {**about, "index": other}))
        elif not seen:
            findings.append(Finding("ledger_bundle_key_unregistered", about))
        compromise = record.compromised.get(kid)
        # A record's time before the key was made (an earlier release published "1900-01-01"
        # as typed) means its first moment, which is what a bundle now carries for it.
        if compromise is not None and (key.compromised_since is None or key.compromised_since
                                       > max(compromise[1], key.valid_from)):
            findings.append(Finding("ledger_bundle_compromise_ignored",
                                    {**about, "index": compromise[0]}))
    return findings
