"""The typed entries the ledger accepts, and the canonical CBOR record each one becomes.

Only these types and fields exist; anything else is refused, so no field is meant for personal
data (an office's and a city's names, and the ids, are still text a token holder chooses)::

    key_registered      kid, public_key, city, country, office, valid_from, valid_until
    key_rotated         kid, replaces
    key_compromised     kid, effective
    bundle_published    city, version, digest
    credential_issued   commitment (32 bytes: a salted hash of the claims)
    status_changed      list, index, status (valid|revoked|suspended), reason (fixed codes)
    witness_cosignature origin, size, root, witness, signature
    notice              text

In JSON (``append --file`` and ``POST /entries``) bytes fields are base64url and times are
RFC 3339 UTC (``2025-01-31T00:00:00Z``). A stored record (the exact bytes hashed into the tree) is
the canonical CBOR array ``[seq, prev, time_ms, type, {fields}]`` where ``prev`` is the RFC 9162
leaf hash of the previous record (32 zero bytes for the first).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import cbor2

from credential import cbor
from credential.errors import MalformedInput
from credential.keys import b64url, unb64url
from credential.passport import STATUS_BOUND
from credential.text import escaped, is_text

__all__ = [
    "ENTRY_TYPES",
    "MAX_RECORD",
    "PUBLIC_REASONS",
    "REASONS",
    "STATUSES",
    "BundlePublished",
    "CredentialIssued",
    "Entry",
    "KeyCompromised",
    "KeyRegistered",
    "KeyRotated",
    "Notice",
    "Record",
    "StatusChanged",
    "WitnessCosignature",
    "check_key_names",
    "check_new",
    "decode_record",
    "encode_record",
    "entry_from_json",
    "entry_to_json",
    "possession_message",
    "public_reason",
    "record_prefix",
    "record_time",
    "registration_of",
]

# The most bytes one stored record may have, appended or mirrored. The fields' own bounds keep
# every valid record far below it (the largest, a notice of 2000 four-byte characters, is about
# 8 KB); the bound is what lets /entries always fit a record in a page a mirror reads whole
# (ledger.http.MAX_PAGE_BYTES), whatever entry types come later.
MAX_RECORD = 64 * 1024
STATUSES = ("valid", "revoked", "suspended")
# Fixed codes, never free text: a reason goes on the public record, and a clerk's note could
# name the resident ("lost phone at the Centro library, María H.").
REASONS = ("unspecified", "holder_request", "fraud", "data_error", "deceased", "moved_away",
           "key_compromise", "superseded", "device_lost")
# The reasons an office publishes as they are: what the office or a key did. The others say
# something of the resident's life (fraud, a death, a move, a lost phone, a request), and a
# status change names the list index that every code the resident shows carries: a counter
# that once saw the code could read them off the public record. They go on it as
# ``unspecified``; the office keeps the reason given. (Records from before say what they say.)
PUBLIC_REASONS = ("unspecified", "data_error", "key_compromise", "superseded")
_KID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
# a city's, an office's, a key's (credential.note.MAX_KEY_NAME keeps a log's and a witness's
# names within it: a witness_cosignature record holds both)
_NAME = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")  # not \d: ASCII
_MAX_INT = 1 << 53
# Names and notices hold text, as residents' and offices' names do (``credential.text``; a
# notice keeps its line breaks).


def public_reason(reason: str) -> str:
    """The reason a status change goes on the public record with (see ``PUBLIC_REASONS``)."""
    return reason if reason in PUBLIC_REASONS else "unspecified"


def check_new(batch: Sequence[Entry], lines: Sequence[int] | None = None) -> None:
    """Refuse what a node must not take into a new batch, though each entry is well formed.
    Records already in a log (mirrored, audited) are read whatever they say. Each refusal
    names the entry (``entries[i]``, as a request holds them) or, given the file's ``lines``
    the entries were read from, its line.

    - A status change whose reason is not for the public record (``PUBLIC_REASONS``): the
      office software sends only those, but a node took "fraud" or "deceased" from any token
      (a script, a leaked token, an older office), and kept it for good, cosigned, beside the
      list index every code of the resident carries.
    - A status list number or index no passport can carry (the format's are below 2^32): an
      office restored from its backup numbers its next list above every one the record shows,
      so one such entry left it signing passports every counter refuses.
    - A key rotated into itself: a key history no auditor can read.
    """
    def bad(number: int, name: str, reason: str) -> MalformedInput:
        if lines is None:
            return _bad(f"entries[{number}].{name}", reason)
        inner = _bad(name, reason)
        return MalformedInput("ledger_bad_line", line=lines[number],
                              reason_es=inner.message["es"], reason_en=inner.message["en"])

    for number, entry in enumerate(batch):
        if isinstance(entry, StatusChanged):
            if entry.reason not in PUBLIC_REASONS:
                where = ((f"entries[{number}]",) * 2 if lines is None
                         else (f"Línea {lines[number]}", f"Line {lines[number]}"))
                raise MalformedInput("ledger_reason_not_public", index=number,
                                     where_es=where[0], where_en=where[1],
                                     reason=entry.reason, allowed=", ".join(PUBLIC_REASONS))
            # an office's lists are "CODE.N" (a list named otherwise is no passport's)
            list_number = entry.list.rpartition(".")[2]
            if (list_number.isascii() and list_number.isdigit()
                    and int(list_number) >= STATUS_BOUND):
                raise bad(number, "list", "a list number below 2^32")
            if entry.index >= STATUS_BOUND:
                raise bad(number, "index", "a number below 2^32")
        elif isinstance(entry, KeyRotated) and entry.kid == entry.replaces:
            raise bad(number, "replaces", "a key does not replace itself")


def _bad(field: str, reason: str) -> MalformedInput:
    return MalformedInput("ledger_bad_field", field=field, reason=reason)


def _encodable(text: str) -> bool:
    """JSON's ``\\ud800`` escapes decode to lone surrogates, which no UTF-8 (so no CBOR
    record) can hold: refused with the other field errors, before anything is written."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check(kind: str, name: str, value: Any) -> None:
    if kind in ("bytes32", "pubkey", "cosig"):
        if not isinstance(value, bytes):
            raise _bad(name, "expected bytes")
        want = {"bytes32": (32, 32), "pubkey": (16, 1024), "cosig": (76, 76)}[kind]
        if not want[0] <= len(value) <= want[1]:
            raise _bad(name, f"length {len(value)}")
        return
    if kind == "uint":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_INT:
            raise _bad(name, "expected a non-negative integer")
        return
    if not isinstance(value, str):
        raise _bad(name, "expected a string")
    if not _encodable(value):
        raise _bad(name, "not valid Unicode text (a lone surrogate)")
    if kind == "text" and not 1 <= len(value) <= 2000:
        raise _bad(name, "1-2000 characters of text")
    if kind in ("name", "text") and not is_text(value, "\n" if kind == "text" else ""):
        raise MalformedInput("ledger_bad_text", field=name)
    if kind == "kid" and not _KID.fullmatch(value):
        raise _bad(name, "1-64 of A-Z a-z 0-9 . _ : -")
    if kind == "name" and not _NAME.fullmatch(value):
        raise _bad(name, "1-128 printable characters")
    if kind == "country" and not re.fullmatch(r"[A-Z]{2}", value):
        raise _bad(name, "ISO 3166 alpha-2 code")
    if kind == "time":
        try:
            ok = bool(_TIME.fullmatch(value))
            ok = ok and bool(datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            ok = False
        if not ok:
            raise _bad(name, "RFC 3339 UTC time like 2025-01-31T00:00:00Z")
    if kind == "status" and value not in STATUSES:
        raise _bad(name, "one of " + ", ".join(STATUSES))
    if kind == "reason" and value not in REASONS:
        raise _bad(name, "one of " + ", ".join(REASONS))


@dataclass(frozen=True)
class Entry:
    """Base of the typed entries; subclasses name their type and field kinds."""

    TYPE: ClassVar[str] = ""
    KINDS: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        for name, kind in self.KINDS.items():
            _check(kind, name, getattr(self, name))

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.KINDS}


@dataclass(frozen=True)
class KeyRegistered(Entry):
    TYPE: ClassVar[str] = "key_registered"
    KINDS: ClassVar[dict[str, str]] = {
        "kid": "kid", "public_key": "pubkey", "city": "name", "country": "country",
        "office": "name", "valid_from": "time", "valid_until": "time"}
    kid: str
    public_key: bytes
    city: str
    country: str
    office: str
    valid_from: str
    valid_until: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.valid_until <= self.valid_from:
            raise _bad("valid_until", "must be after valid_from")


@dataclass(frozen=True)
class KeyRotated(Entry):
    TYPE: ClassVar[str] = "key_rotated"
    KINDS: ClassVar[dict[str, str]] = {"kid": "kid", "replaces": "kid"}
    kid: str
    replaces: str


@dataclass(frozen=True)
class KeyCompromised(Entry):
    TYPE: ClassVar[str] = "key_compromised"
    KINDS: ClassVar[dict[str, str]] = {"kid": "kid", "effective": "time"}
    kid: str
    effective: str


@dataclass(frozen=True)
class BundlePublished(Entry):
    TYPE: ClassVar[str] = "bundle_published"
    KINDS: ClassVar[dict[str, str]] = {"city": "name", "version": "uint", "digest": "bytes32"}
    city: str
    version: int
    digest: bytes


@dataclass(frozen=True)
class CredentialIssued(Entry):
    TYPE: ClassVar[str] = "credential_issued"
    KINDS: ClassVar[dict[str, str]] = {"commitment": "bytes32"}
    commitment: bytes


@dataclass(frozen=True)
class StatusChanged(Entry):
    TYPE: ClassVar[str] = "status_changed"
    KINDS: ClassVar[dict[str, str]] = {
        "list": "kid", "index": "uint", "status": "status", "reason": "reason"}
    list: str
    index: int
    status: str
    reason: str = "unspecified"


@dataclass(frozen=True)
class WitnessCosignature(Entry):
    TYPE: ClassVar[str] = "witness_cosignature"
    KINDS: ClassVar[dict[str, str]] = {
        "origin": "name", "size": "uint", "root": "bytes32", "witness": "name",
        "signature": "cosig"}
    origin: str
    size: int
    root: bytes
    witness: str
    signature: bytes


@dataclass(frozen=True)
class Notice(Entry):
    TYPE: ClassVar[str] = "notice"
    KINDS: ClassVar[dict[str, str]] = {"text": "text"}
    text: str


ENTRY_TYPES: dict[str, type[Entry]] = {
    cls.TYPE: cls
    for cls in (KeyRegistered, KeyRotated, KeyCompromised, BundlePublished, CredentialIssued,
                StatusChanged, WitnessCosignature, Notice)
}
_BYTES_KINDS = ("bytes32", "pubkey", "cosig")


def _b64url(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or value != value.strip():
        raise _bad(field, "expected base64url")
    try:
        return unb64url(value)
    except MalformedInput:
        raise _bad(field, "expected base64url") from None


def _build(data: Mapping[str, Any], *, from_json: bool) -> Entry:
    if not isinstance(data, Mapping):
        raise MalformedInput("ledger_bad_entry", reason="an entry is a JSON object")
    kind = data.get("type")
    cls = ENTRY_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        if kind is None:  # absent or null: not Python's "None" in the message
            raise MalformedInput("ledger_bad_entry", reason="missing type")
        raise MalformedInput("ledger_bad_entry", reason=f"unknown type {str(kind)[:40]!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    given = set(data) - {"type"}
    if given - names:
        raise MalformedInput("ledger_bad_entry",
                             # str(): a stored record's map may have non-text keys; escaped:
                             # the message goes to a terminal, and a key can be "\x1b]0;…"
                             reason="unknown fields: "
                             + ", ".join(sorted(escaped(str(k)) for k in given - names))[:200])
    values = {}
    for name in names & given:
        value = data[name]
        if from_json and cls.KINDS[name] in _BYTES_KINDS:
            value = _b64url(value, name)
        values[name] = value
    try:
        return cls(**values)
    except TypeError:
        missing = sorted(n for n in names - given
                         if not isinstance(cls.__dataclass_fields__[n].default, str))
        raise MalformedInput("ledger_bad_entry",
                             reason="missing fields: " + ", ".join(missing)) from None


def entry_from_json(data: Mapping[str, Any]) -> Entry:
    """A typed entry from its JSON object (``type`` plus fields, bytes as base64url)."""
    return _build(data, from_json=True)


def entry_to_json(entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"type": entry.TYPE}
    for name, value in entry.fields().items():
        if isinstance(value, bytes):
            value = b64url(value)
        out[name] = value
    return out


def as_entry(item: Entry | Mapping[str, Any]) -> Entry:
    """Accept a typed entry, a JSON-style dict (base64url bytes) or a dict with raw bytes."""
    if isinstance(item, Entry):
        return item
    raw = any(isinstance(v, bytes) for v in item.values()) if isinstance(item, Mapping) else False
    return _build(item, from_json=not raw)


@dataclass(frozen=True)
class Record:
    """A decoded ledger record: its place in the chain plus the entry."""

    seq: int
    prev: bytes
    time_ms: int
    entry: Entry


def encode_record(seq: int, prev: bytes, time_ms: int, entry: Entry) -> bytes:
    """Canonical CBOR of ``[seq, prev, time_ms, type, {fields}]``.

    The fixed-shape header is assembled directly (it is the hot path of every append); the
    fields map goes through cbor2's canonical encoder. ``decode_record`` re-checks the result.
    """
    if len(prev) != 32 or seq < 0 or time_ms < 0:
        raise MalformedInput("ledger_bad_record", reason="bad header")
    return (record_prefix(seq, prev) + cbor.head(0, time_ms) + type_cbor(entry.TYPE)
            + _fields_cbor(entry))


def record_prefix(seq: int, prev: bytes) -> bytes:
    """The first bytes of record ``seq``: array(5), seq, bytes(32) prev (what audit and
    mirrors check each record's place in the chain by)."""
    return b"\x85" + cbor.head(0, seq) + b"\x58\x20" + prev


_UINT_WIDTH = {24: 1, 25: 2, 26: 4, 27: 8}  # a CBOR head's additional info: argument bytes


def record_time(leaf: bytes, seq: int) -> int | None:
    """The time of record ``seq``, read from its header alone (audit reads it for every record,
    a mirror for the last of each page); ``None`` when the header is not record ``seq``'s or
    the time is not an unsigned integer (``decode_record`` says what is wrong)."""
    prefix = record_prefix(seq, b"")  # the previous hash (32 bytes) follows it
    if not leaf.startswith(prefix):
        return None
    return _uint_at(leaf, len(prefix) + 32)


def _uint_at(data: bytes, at: int) -> int | None:
    if len(data) <= at or data[at] >> 5 != 0:
        return None
    info = data[at] & 31
    if info < 24:
        return info
    width = _UINT_WIDTH.get(info)
    if width is None or len(data) < at + 1 + width:
        return None
    return int.from_bytes(data[at + 1:at + 1 + width], "big")


_FIELD_KEYS: dict[str, tuple[bytes, tuple[tuple[str, bytes], ...]]] = {}


def _fields_cbor(entry: Entry) -> bytes:
    # Fields are only str, bytes and non-negative ints (validated), so the canonical map is
    # built here: keys in canonical order (shorter first, then bytewise), shortest lengths.
    plan = _FIELD_KEYS.get(entry.TYPE)
    if plan is None:
        keys = sorted((bytes(cbor2.dumps(k)), k) for k in entry.KINDS)
        keys.sort(key=lambda pair: (len(pair[0]), pair[0]))
        plan = _FIELD_KEYS[entry.TYPE] = (cbor.head(5, len(keys)),
                                          tuple((name, enc) for enc, name in keys))
    parts = [plan[0]]
    for name, enc in plan[1]:
        value = getattr(entry, name)
        parts.append(enc)
        if isinstance(value, bytes):
            parts.append(cbor.head(2, len(value)) + value)
        elif isinstance(value, str):
            raw = value.encode()
            parts.append(cbor.head(3, len(raw)) + raw)
        else:
            parts.append(cbor.head(0, value))
    return b"".join(parts)


_TYPE_CBOR: dict[str, bytes] = {}


def type_cbor(name: str) -> bytes:
    cached = _TYPE_CBOR.get(name)
    if cached is None:
        cached = _TYPE_CBOR[name] = bytes(cbor2.dumps(name))
    return cached


def _reference_encode(seq: int, prev: bytes, time_ms: int, entry: Entry) -> bytes:
    return bytes(cbor2.dumps([seq, prev, time_ms, entry.TYPE, entry.fields()], canonical=True))


def check_key_names(city: str, country: str, office: str = "Office") -> None:
    """Whether a key registration naming this ``city``, ``country`` and ``office`` would be
    taken (``MalformedInput`` naming the field otherwise): an office checks its names before
    it makes anything, a node a root file's before it binds a token to them."""
    entry_from_json({"type": "key_registered", "kid": "probe", "public_key": "A" * 43,
                     "city": city, "country": country, "office": office,
                     "valid_from": "2000-01-01T00:00:00Z", "valid_until": "2000-01-02T00:00:00Z"})


def possession_message(entry: KeyRegistered) -> bytes:
    """What an office key signs to show a node that whoever registers it holds it (the
    ``Key-Possession`` header, ``ledger.scopes``): the registration itself, every field, as
    the record will hold it, behind a label no other signature of that key begins with."""
    return b"pasaporte key possession v1\n" + type_cbor(entry.TYPE) + _fields_cbor(entry)


def registration_of(leaf: bytes) -> tuple[str, str, str] | None:
    """The kid, city and country a ``key_registered`` record holds, read without today's
    rules for its text (``None`` for any other record, or one without them). A record is
    signed history: one an earlier release accepted (a soft hyphen in an office's name, before
    such characters were refused) still says which city registered the key, and refusing it
    stopped an upgrade's migration, and a mirror's every copy, at that record."""
    try:
        value = cbor2.loads(leaf)
    except Exception:  # cbor2 raises several types for damaged input
        return None
    if not (isinstance(value, list) and len(value) == 5 and value[3] == KeyRegistered.TYPE
            and isinstance(value[4], dict)):
        return None
    kid, city, country = (value[4].get(name) for name in ("kid", "city", "country"))
    # within what ``ledger_kids`` holds (a server's columns refuse longer)
    if not (isinstance(kid, str) and isinstance(city, str) and isinstance(country, str)
            and 0 < len(kid) <= 64 and 0 < len(city) <= 128 and len(country) == 2):
        return None
    return kid, city, country


def decode_record(leaf: bytes) -> Record:
    """Parse and validate a stored record (strict: canonical, known type and fields)."""
    try:
        value = cbor2.loads(leaf)
    except Exception:  # cbor2 raises several types for damaged input
        raise MalformedInput("ledger_bad_record", reason="not CBOR") from None
    if not (isinstance(value, list) and len(value) == 5 and isinstance(value[4], dict)):
        raise MalformedInput("ledger_bad_record", reason="not a 5-item record")
    seq, prev, time_ms, kind, fields = value
    # type() is: a CBOR true/false is a Python bool, which isinstance() counts as an int
    if not (type(seq) is int and isinstance(prev, bytes) and len(prev) == 32
            and type(time_ms) is int and isinstance(kind, str)):
        raise MalformedInput("ledger_bad_record", reason="bad header")
    if not (0 <= seq < 2**63 and 0 <= time_ms < 2**63):  # what a CBOR head can say (bignums: no)
        raise MalformedInput("ledger_bad_record", reason="bad header")
    entry = _build({**fields, "type": kind}, from_json=False)
    if _reference_encode(seq, prev, time_ms, entry) != leaf:
        raise MalformedInput("ledger_bad_record", reason="not canonical")
    return Record(seq, prev, time_ms, entry)
