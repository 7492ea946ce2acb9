"""The resident's wallet on disk: the holder key sealed at rest and the credentials it holds.

Layout of a wallet home (``credential.home.resolve_home("wallet", …)``)::

    HOME/                     0700
      wallet.json             0600  {"type", "public_key" (clear), "public_key_check",
                                     "sealed_key" (keys.seal), …}
      .lock                   0600  empty; held (flock) by whoever changes the wallet
      credentials/            0700
        <credential id>.cbor  0600  the credential as imported: CBOR [COSE_Sign1, [disclosures]]
        <credential id>.sha256 0600 the SHA-256 of those bytes (hex, one a line), written at
                                    import: damage on disk is told from the office's signing
      trust/                  0700
        <code>.root.json, <code>.bundle   the newest verified bundle per city (``wallet trust``)

The public key sits in clear next to the sealed secret so that ``wallet key``, ``import`` and
``list`` never ask for the passphrase; only ``present`` (which signs) and ``change_passphrase``
(which seals the key anew) unseal. Each file is written with ``atomic_write`` (a city's root
and bundle staged together: ``Wallet._store_trust``), so a crash leaves the old file or the new
one, never half of one; and each change that depends on what is already there (init, import,
trust, a new passphrase) is made holding ``.lock``, so that two commands run at once cannot both
act on what they saw before the other.

Nothing here knows about click: the command layer (``wallet_cli.cli``) reads passphrases and
prints; this module checks, stores and builds presentations, raising ``credential.errors``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal, cast

import nacl.signing
import nacl.utils

from credential import jsontext, sd, transport
from credential.bundle import (
    CITY_CODE,
    MAX_BUNDLE,
    MAX_ROOT,
    RootKey,
    TrustBundle,
    check_lists,
    check_roots,
    parse_bundle,
)
from credential.claims import display_value, service_named, services_listed
from credential.errors import MalformedInput, PasaporteError, Rejection, StoreError, UsageError
from credential.home import (
    MIN_PASSPHRASE,
    StagedFile,
    atomic_write,
    held_lock,
    make_folders,
    read_bounded,
    refuse_other_role,
    uninterrupted,
)
from credential.keys import (
    b64url,
    check_public_key,
    seal,
    sealed_whole,
    signing_key,
    unb64url,
    unseal,
)
from credential.passport import Decoded, check_audience, decode_bytes, present
from credential.statuslist import MARKS, StatusList
from credential.text import check_utf8, escaped, folded, typed_forms
from credential.times import COUNTER_CLOCK_SKEW_S, OFFICE_CLOCK_AHEAD_S, first_day, last_day
from schemas import not_eligible, schema

__all__ = [
    "CredentialEntry",
    "ImportResult",
    "Presentation",
    "Status",
    "Wallet",
    "audience_for",
    "credential_status",
    "groups_for",
    "service_for",
]

WALLET_TYPE = "pasaporte-wallet/1"
WALLET_FILE = "wallet.json"
CREDENTIALS_DIR = "credentials"
SUFFIX = ".cbor"
DIGESTS = ".sha256"
MAX_DIGESTS = 1024  # two digests (the old bytes and the new, while one replaces the other)
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
TRUST_DIR = "trust"
# The hidden names ``StagedFile`` gives each file the wallet writes while it is written and to the
# file it replaced, per folder: a command killed mid-way leaves them behind (in ``credentials/``,
# a whole copy of a passport, names and birth date included; beside ``wallet.json``, the key
# sealed under a passphrase that never took effect). Whoever next holds the lock removes these,
# and only these (the folders are the wallet's, but a file of any other name may be the
# resident's).
_STAGED: dict[str, re.Pattern[str]] = {
    "": StagedFile.leftovers(re.escape(WALLET_FILE)),
    CREDENTIALS_DIR: StagedFile.leftovers(
        rf"[A-Za-z0-9_-]{{1,43}}(?:{re.escape(SUFFIX)}|{re.escape(DIGESTS)})"),
    TRUST_DIR: StagedFile.leftovers(rf"{CITY_CODE.pattern}\.(?:root\.json|bundle)"),
}
LOCK_FILE = ".lock"
MAX_IMPORT_CHARS = 16384  # a full credential is ~1 KB of QR text; anything far larger is not one
# UTF-8 takes at most 4 bytes a character: more bytes than this are too many characters, known
# before decoding (a bounded read may end in the middle of a character).
MAX_IMPORT_BYTES = 4 * MAX_IMPORT_CHARS
# Files of the wallet's own are read whole, but never more than this: a file replaced by a link
# to a device, or by something huge, is damage to report, not a read to run out of memory on.
MAX_WALLET_FILE = 64 * 1024  # wallet.json: a few hundred bytes
MAX_STORED = MAX_IMPORT_BYTES  # a stored credential: smaller than the text it was imported from
# Credential ids are base64url of the CWT ``cti`` (≤ 32 bytes): also safe as file names, and
# checking the shape keeps a typed id from ever naming a path outside the wallet.
_ID = re.compile(r"^[A-Za-z0-9_-]{1,43}$")
# A local clock this far behind a time the wallet knows has passed (the passport was signed, the
# city's bundle was made) is not merely a little slow: the counter allows 5 minutes. But those
# times were stamped by the issuing office's clock, which may be the one that is wrong (ahead).
CLOCK_SLACK = 300
# ``OFFICE_CLOCK_AHEAD_S`` (``credential.times``, as counters read it): a local clock further
# behind the bundle's making than that, the counter will refuse the code whichever clock is
# wrong: this one (the code is old when it is made), or the office's (a counter with a right
# clock refuses its bundle: ``counter_clock_behind``). Less far, or behind only the passport's
# signing (which counters do not hold to their clock), a counter with a right clock accepts the
# code if this clock is right: it may be, and is not blamed.

Unlock = Literal["exact", "trimmed", "caps_lock"]

Status = Literal["valid", "expired", "not_yet_valid", "revoked", "suspended",
                 "key_compromised", "key_not_valid_at_issuance", "signature_invalid",
                 "key_unknown"]


def credential_status(nbf: int, exp: int, now: int) -> Status:
    """By the local clock alone (no bundle from the issuing city to say more), as a counter
    with the default policy decides: its clock skew widens the first and last day, and inside
    it the counter accepts what "the counter will refuse it" said it would not."""
    if now + COUNTER_CLOCK_SKEW_S < nbf:
        return "not_yet_valid"
    if now - COUNTER_CLOCK_SKEW_S >= exp:
        return "expired"
    return "valid"


def _status(decoded: Decoded, bundle: TrustBundle | None, now: int) -> Status:
    """By the local clock, then by the status lists of the newest bundle the wallet trusts for
    the issuing city (``wallet trust``): as much as a counter holding that bundle would know."""
    p = decoded.payload
    status = credential_status(p.nbf, p.exp, now)
    # Not valid yet is no reason to look no further: an early renewal revoked or replaced
    # before its first day was "not valid yet, you need no new one" for a passport every
    # counter will refuse on that day.
    if status == "expired" or bundle is None:
        return status
    signer = next((k for k in bundle.keys if k.kid == decoded.credential.kid), None)
    if signer is None:
        # Imported before the city was trusted, by a key the city's bundle does not list: a
        # counter holding that bundle refuses it (issuer_unknown). A key the city added after
        # the bundle the wallet trusts, or one that is not the city's at all: either way the
        # resident hears it here, not in the queue.
        return "key_unknown"
    if not decoded.credential.verify(signer.public_key):
        # imported before the city was trusted (then nothing could check it): once it is,
        # the resident hears now what every counter would answer (signature_invalid)
        return "signature_invalid"
    if not signer.valid_from <= p.iat <= signer.valid_until:
        # Signed outside its key's window (a copy of the office's store, an old laptop,
        # signing after the key was rotated away): every counter refuses it, as it does.
        return "key_not_valid_at_issuance"
    for key in bundle.keys:
        # As a counter decides (verifier.engine): signed at or after its key's compromise
        # time, the passport is refused everywhere, however valid its dates; the resident
        # should hear so before queueing at a counter, and ask the office for a new one.
        if (key.kid == decoded.credential.kid and key.compromised_since is not None
                and p.iat >= key.compromised_since):
            return "key_compromised"
    for info in bundle.status_lists:
        if info.list_id != p.status.list_id or info.purpose not in MARKS:
            continue
        lst = StatusList.from_compressed(info.purpose, info.size, info.data)
        if p.status.idx < lst.size and lst.get(p.status.idx):
            return cast(Status, MARKS[info.purpose])  # "revoked" or "suspended"
    return status




def _claims_view(decoded: Decoded, bundle: TrustBundle | None = None) -> dict[str, Any]:
    """The holder's own claims in the claims-file shape (group objects, flat groups inlined).

    Catalogued values (city, library system, clinic network) are compact codes that only the
    issuing city's trust bundle names: with a trusted bundle (``wallet trust``) they show as
    names, otherwise as ``#code``.
    """
    out: dict[str, Any] = {}
    for g in schema().groups:
        values = decoded.groups.get(g.name)
        if values is None:
            continue
        shown: dict[str, Any] = {}
        for f in g.fields:
            v = values.get(f.name)
            if v is not None:
                shown[f.name] = display_value(f.type, f.catalog, v,
                                              bundle.catalogs if bundle else {})
        if g.json == "object":
            out[g.name] = shown
        else:
            out.update(shown)
    return out


@dataclass(frozen=True)
class CredentialEntry:
    """One stored credential as ``wallet list`` shows it."""

    id: str
    issuer: str
    valid_from: date
    valid_until: date
    status: Status
    claims: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "issuer": self.issuer, "valid_from": self.valid_from.isoformat(),
                "valid_until": self.valid_until.isoformat(), "status": self.status,
                "claims": dict(self.claims)}


@dataclass(frozen=True)
class ImportResult:
    id: str
    outcome: Literal["imported", "unchanged", "replaced"]


@dataclass(frozen=True)
class Presentation:
    text: str  # transport text, ``PU1:…``
    credential_id: str
    groups: tuple[str, ...]
    audience: str
    status: Status  # by the local clock and the trusted bundle: a counter refuses a non-valid one
    # The groups the service's counters ask for by default and this code leaves out: such a
    # counter refuses it (``claims_missing``), however genuine.
    missing: tuple[str, ...] = ()
    service: str = ""  # the service's own name (``--for`` may have named it in Spanish)
    # How the passphrase opened the key: as typed, without blanks at its ends (a paste), or with
    # its letters' case inverted (caps lock on): the command line says so for the last.
    unlocked: Unlock = "exact"
    # A time the local clock should be past and is not, by more than counters allow an office's
    # clock to be ahead (``OFFICE_CLOCK_AHEAD_S``): the passport's signing or the trusted
    # bundle's making. The counter will refuse the code.
    clock_behind: int | None = None
    # Such a time the local clock is behind by more than ``CLOCK_SLACK`` but no more than
    # counters allow: this clock is behind or the office's was ahead, and only the first makes
    # a counter refuse the code (as old).
    clock_differs: int | None = None
    valid_from: date = date.min  # the passport's first day: a not yet valid one is for then
    # The passport says the holder may not use the service (its eligibility claim is not true):
    # a counter refuses it (``not_eligible``), however genuine.
    ineligible: bool = False


# -- pure helpers for ``present`` -------------------------------------------------------------


def _claim_index() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Name → group for group names, ``group.claim`` and unambiguous claim names; plus the claim
    names that several groups share (``eligible``), which must be written ``group.claim``."""
    owners: dict[str, list[str]] = {}
    for g in schema().groups:
        for f in g.fields:
            owners.setdefault(f.name, []).append(g.name)
    index: dict[str, str] = {}
    for g in schema().groups:
        for f in g.fields:
            index[f"{g.name}.{f.name}"] = g.name
    for name, groups in owners.items():
        if len(groups) == 1:
            index[name] = groups[0]
    for g in schema().groups:  # a group name wins over a claim of the same name (birth_date)
        index[g.name] = g.name
    # And as the resident reads them where ``present`` says what it shows ("Se muestra:
    # Residencia (Ciudad de residencia, …)"): each label, Spanish or English, folded (any
    # case, accents or none). A label two groups share names neither.
    labels: dict[str, set[str]] = {}
    for g in schema().groups:
        for text in (g.label["es"], g.label["en"], *(f.label[lang] for f in g.fields
                                                     for lang in ("es", "en"))):
            labels.setdefault(folded(text), set()).add(g.name)
    for label, named in labels.items():
        if len(named) == 1:
            index.setdefault(label, next(iter(named)))
    return index, {n: gs for n, gs in owners.items() if len(gs) > 1 and n not in index}


def _is_group_name(name: str, group: str) -> bool:
    """Whether ``name`` names ``group`` itself (its name or label), not one of its claims."""
    spec = schema().group(group)
    return folded(name) in typed_forms(spec.name, spec.label)


def _named(disclose: Iterable[str]) -> list[tuple[str, str]]:
    """Each name in ``disclose`` (comma-separated allowed) with the group it stands for, or the
    usage error that says why it stands for none."""
    names = [n.strip() for item in disclose for n in item.split(",") if n.strip()]
    if not names:
        raise UsageError("wallet_disclose_empty", **_valid_names())
    index, ambiguous = _claim_index()
    named = []
    for name in names:
        check_utf8(name, "--disclose")  # else "no such claim", listing the one typed
        if name in ambiguous:
            fields = [next(f for f in schema().group(g).fields if f.name == name)
                      for g in ambiguous[name]]
            raise UsageError("wallet_disclose_ambiguous", name=name, **{
                f"options_{lang}": ", ".join(f"{quote[0]}{f.label[lang]}{quote[1]} ({g}.{name})"
                                             for g, f in zip(ambiguous[name], fields,
                                                             strict=True))
                for lang, quote in (("es", "«»"), ("en", "“”"))})
        group = index.get(name) or index.get(folded(name))
        if group is None:
            # not all of it, and escaped: pasted text can hold a terminal's control sequences
            raise UsageError("wallet_disclose_unknown", name=escaped(name[:80]),
                             **_valid_names())
        named.append((name, group))
    return named


def shown_with(disclose: Iterable[str]) -> list[tuple[str, str]]:
    """The claims named in ``disclose`` (as ``groups_for`` reads it) that bring others with
    them, as ``(name, group)``: a group is the smallest unit the office signed, so naming
    ``given_name`` shows ``family_name`` too, which the resident should hear in so many words."""
    return [(name, group) for name, group in _named(disclose)
            if not _is_group_name(name, group) and len(schema().group(group).fields) > 1]


def _valid_names() -> dict[str, str]:
    """``valid_es`` / ``valid_en``: the groups by their labels in that language, in leaf order,
    then by name, then the claim names (``group.claim`` only where a bare name is shared);
    every ``group.claim`` and every label is accepted too, but listing them all would bury the
    useful names."""
    groups = [g.name for g in schema().groups]
    _, ambiguous = _claim_index()
    claims: list[str] = []
    for g in schema().groups:
        for f in g.fields:
            name = f"{g.name}.{f.name}" if f.name in ambiguous else f.name
            if name not in groups and name not in claims:
                claims.append(name)
    names = ", ".join(groups) + "; " + ", ".join(claims)
    return {f"valid_{lang}": ", ".join(g.label[lang] for g in schema().groups)
            + (" (o por nombre: " if lang == "es" else " (or by name: ") + names + ")"
            for lang in ("es", "en")}


def service_for(name: str) -> str:
    """The service ``name`` stands for (``credential.claims.service_named``), or
    ``wallet_service_unknown``."""
    key = service_named(check_utf8(name, "--for"))
    if key is not None:
        return key
    listed = services_listed()
    raise UsageError("wallet_service_unknown", service=escaped(name[:80]),
                     valid_es=listed["es"], valid_en=listed["en"])


def _caps_lock(text: str) -> str:
    """``text`` as caps lock would have it, each letter's case inverted one for one.

    Not ``str.swapcase``: for a few letters it is no inversion ("ß" → "SS", "ı" → "I" → "i"),
    so it made a passphrase that is no caps-lock typing of the real one open the wallet
    ("ßTRASSE" opened one sealed with "SStrasse"), and left unforgiven a caps-lock typing of one
    with such a letter (caps lock leaves "ß" as it is). Only a letter whose inverse is one
    letter that inverts back to it is a key's two cases; any other character is kept."""
    out = []
    for char in text:
        other = char.swapcase()
        out.append(other if len(other) == 1 and other.swapcase() == char else char)
    return "".join(out)


def groups_for(service: str, disclose: Iterable[str] | None = None) -> tuple[str, ...]:
    """The disclosure groups to show: the service's defaults, or the groups (or claims) named.

    Names may be comma-separated; a claim name stands for the group that carries it, because a
    group is the smallest unit the issuer signed. Result in schema (Merkle leaf) order.
    """
    spec = schema().services[service_for(service)]
    wanted = set(spec.discloses) if disclose is None else {g for _, g in _named(disclose)}
    return tuple(g.name for g in schema().groups if g.name in wanted)


def audience_for(service: str, counter: str | None = None) -> str:
    """``SERVICE`` or ``SERVICE:COUNTER`` (``credential.passport.audience``), checked: a
    counter id typed on a Latin-1 terminal is said to be that, as at the counter (``verify
    --counter``), not "not printable text"."""
    if counter is not None:
        check_utf8(counter, "--audience")
    return check_audience(service, counter, "wallet_audience_invalid")


# -- checking a credential file ---------------------------------------------------------------

def _check_credential(cbor_bytes: bytes, holder_key: bytes) -> Decoded:
    """Shape, completeness, digests and holder key of a credential; raise if any is wrong.

    The issuer's signature is not checked: the wallet holds no trust bundle. The counter checks
    it at every presentation; what the wallet guards against is storing something it could never
    present (a paper credential, a presentation, missing or altered data, someone else's key).
    """
    decoded = decode_bytes(cbor_bytes)
    if decoded.is_presentation:
        raise MalformedInput("wallet_import_presentation")
    # Unsigned as far as the wallet can tell when it trusts no bundle of that city: a crafted
    # file's "city" would reach the resident's terminal in every listing and message.
    if not CITY_CODE.fullmatch(decoded.payload.iss):
        raise MalformedInput("wallet_import_issuer_invalid",
                             issuer=escaped(decoded.payload.iss[:64]))
    groups = schema().groups
    if len(decoded.disclosures) != len(groups):
        raise MalformedInput("wallet_import_incomplete", have=len(decoded.disclosures),
                             want=len(groups))
    computed = decoded.computed_root([sd.leaf_digest(x) for x in decoded.disclosures])
    if computed != decoded.payload.sd_root:
        raise MalformedInput("wallet_import_digest_mismatch")
    if decoded.payload.holder_key is None:
        raise MalformedInput("wallet_import_paper")
    if decoded.payload.holder_key != holder_key:
        raise StoreError("wallet_import_other_holder", id=decoded.payload.credential_id,
                         holder=b64url(decoded.payload.holder_key), mine=b64url(holder_key))
    return decoded


# What a text cut short fails as: base45 of an impossible length, a zlib stream that ends early,
# CBOR whose items run past its end.
# What text cut short is refused as (more of it may follow: a paste wrapped over lines), unless
# the base45 holds a character outside its alphabet, which no more text mends.
CUT_SHORT = frozenset({"base45_invalid", "zlib_invalid", "cbor_invalid"})
FOREIGN_CHARACTER = "character outside the alphabet"


def _reason_of(exc: PasaporteError) -> dict[str, str]:
    """An error's cause, to nest in a message of the wallet's: its own ``reason`` phrase (which
    the catalog reads in Spanish), or else its whole message in each language."""
    reason = exc.detail.get("reason")
    if isinstance(reason, str):
        return {"reason": reason}
    return {"reason": exc.message["en"], "reason_es": exc.message["es"]}


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_name(files: Sequence[str], n: int) -> str:
    """The name of the ``n``-th file given, or its place when no names were given."""
    return files[n] if n < len(files) else f"#{n + 1}"


def _root_in(data: bytes, file: str) -> RootKey:
    try:
        return RootKey.from_json(data)
    except PasaporteError as exc:
        raise MalformedInput("wallet_trust_root_invalid", file=file, **_reason_of(exc)) from None


def _bundle_in(data: bytes, roots: Sequence[RootKey], file: str) -> TrustBundle:
    """The bundle ``data`` (the file ``file``) verified against ``roots``, or a refusal that
    names the file in the wallet's words (the counter's own speak of "this counter")."""
    try:
        return check_lists(parse_bundle(data, roots))
    except PasaporteError as exc:
        if exc.code == "bundle_untrusted":  # named by the city it says it is of
            raise Rejection("wallet_trust_untrusted", file=file, city=exc.detail["city"],
                            city_code=exc.detail["city_code"]) from None
        raise MalformedInput("wallet_trust_bundle_invalid", file=file,
                             **_reason_of(exc)) from None


def _unpacked(text: str, source: str) -> bytes:
    """The CBOR of the one passport in ``text`` (the file ``source``, as the office gave it),
    or a refusal in the wallet's words, naming the file: the transport's own ones speak of a
    scan at a counter ("scan it again"), which is no way forward for a file."""
    # A mail client or ``fold`` wraps a long line. Line breaks are not base45 characters, so
    # taking them out of the text loses nothing of a passport.
    joined = text.replace("\r", "").replace("\n", "")
    try:
        return transport.unpack(joined, max_chars=MAX_IMPORT_CHARS)
    except MalformedInput as exc:
        raise _refused_text(text, exc, source) from None


def _refused_text(text: str, exc: MalformedInput, source: str) -> MalformedInput:
    """What to say of ``text`` that did not unpack with ``exc``. Looked for only then: the
    prefix may occur inside a passport's own base45 by chance, and that one still imports."""
    count = text.upper().count(transport.PREFIX)
    if count > 1:  # two files run together (``cat``), or pasted one after the other
        return MalformedInput("wallet_import_several", file=source, count=count)
    foreign = exc.detail.get("reason") == FOREIGN_CHARACTER
    if exc.code == "base45_invalid" and foreign:
        # nothing missing but something more (an e-mail's "=" soft line breaks): asking the
        # office for the file again, as "cut short" said, brought the same e-mail
        return MalformedInput("wallet_import_foreign_characters", file=source)
    if exc.code in CUT_SHORT:
        return MalformedInput("wallet_import_cut_short", file=source, **_reason_of(exc))
    if exc.code == "not_pasaporte":  # a root, a claims file, a letter: named, with what to give
        return MalformedInput("wallet_import_not_passport", file=source)
    return exc


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold the wallet's lock (waiting for it): a look at what is stored and the change made on
    it become one step, as far as other ``pasaporte wallet`` processes are concerned. Taken,
    it first removes what a killed command left staged (``_STAGED``): none of it is a running
    command's, since each writes only holding this lock."""
    with held_lock(home / LOCK_FILE):
        for folder, leftover in _STAGED.items():
            try:
                names = os.listdir(home / folder)
            except OSError:  # not made yet, or not readable: said where it is read
                continue
            for name in names:
                if leftover.fullmatch(name):
                    with contextlib.suppress(OSError):  # tidying: never a reason to refuse
                        os.unlink(home / folder / name)
        yield


def _read_wallet_file(home: Path) -> tuple[dict[str, Any], bytes, bytes]:
    """``wallet.json`` of ``home``: the whole document (rewritten as it is, but for the sealed
    key, when the passphrase changes), the clear public key and the sealed secret key."""
    path = home / WALLET_FILE
    try:
        raw = read_bounded(path, MAX_WALLET_FILE)
    except FileNotFoundError:
        raise StoreError("wallet_not_initialised", home=str(home)) from None
    except OSError as exc:
        raise StoreError("wallet_unreadable", file=str(path), reason=exc.strerror) from None
    except UsageError:  # far larger than any wallet file: not one
        raise StoreError("wallet_unreadable", file=str(path),
                         reason="not a pasaporte wallet file") from None
    try:
        doc = jsontext.loads(raw)
        if doc.get("type") != WALLET_TYPE:
            raise ValueError("type")
        public_key = unb64url(str(doc["public_key"]), length=32, what="public_key")
        sealed = unb64url(str(doc["sealed_key"]), what="sealed_key")
    except (ValueError, KeyError, TypeError, AttributeError, MalformedInput):
        # One that still names itself a wallet was one: cut short (a full disk, a copy
        # interrupted) or edited by hand; "not a wallet file" sent the resident looking for
        # another file rather than for a backup of this one.
        damaged = WALLET_TYPE.encode() in raw
        raise StoreError("wallet_unreadable", file=str(path), reason=(
            "a damaged wallet file (cut short or edited): restore it from a backup" if damaged
            else "not a pasaporte wallet file")) from None
    # Refused on opening, not at the first ``present``: a wallet that can no longer sign
    # must not go on printing its key (``wallet key``) for an office to issue to.
    if not sealed_whole(sealed):
        raise StoreError("wallet_key_damaged", file=str(path))
    if not _public_key_whole(public_key, doc.get("public_key_check")):
        raise StoreError("wallet_public_key_damaged", file=str(path))
    return cast(dict[str, Any], doc), public_key, sealed


def _key_check(public_key: bytes) -> str:
    """The short digest of the clear public key that ``wallet.json`` keeps beside it."""
    return b64url(hashlib.sha256(public_key).digest()[:8])


def _public_key_whole(public_key: bytes, check: object) -> bool:
    """Whether the clear public key is the one the wallet was made with, as far as can be told
    without the passphrase. One bit changed in it (a bad sector, a careless edit) would have
    ``wallet key`` print a key an office then issues passports to that no wallet can present,
    and make every stored passport read as another wallet's. Wallets made before the check
    was kept (no ``public_key_check``) are held to the curve alone."""
    try:
        check_public_key(public_key)
    except MalformedInput:
        return False
    return check is None or check == _key_check(public_key)


def _tries(passphrase: str) -> list[tuple[str, Unlock]]:
    """What ``Wallet.unlock`` tries ``passphrase`` as, in order: as given; else without blanks
    at its ends (a wallet made before ``create`` dropped them keeps them, so this comes
    second); else with its letters' case inverted (typed with caps lock on). Each opens its
    accented letters composed or decomposed alike (``credential.keys.unseal``)."""
    trimmed = passphrase.strip()
    tries: list[tuple[str, Unlock]] = [(passphrase, "exact")]
    if trimmed and trimmed != passphrase:
        tries.append((trimmed, "trimmed"))
    trimmed = unicodedata.normalize("NFC", trimmed)  # caps lock on the composed form
    inverted = _caps_lock(trimmed)
    if inverted != trimmed:
        tries.append((inverted, "caps_lock"))
    return tries


# -- the wallet -------------------------------------------------------------------------------

class Wallet:
    """An initialised wallet home. ``Wallet.create`` makes one, ``Wallet.open`` loads one."""

    def __init__(self, home: Path, public_key: bytes, sealed_key: bytes) -> None:
        self.home = home
        self.public_key = public_key
        self._sealed = sealed_key

    @property
    def credentials_dir(self) -> Path:
        return self.home / CREDENTIALS_DIR

    @classmethod
    def create(cls, home: Path, passphrase: str) -> Wallet:
        """Make the holder key and seal it; refuse if a wallet already lives in ``home``.

        Blanks at the passphrase's ends are not part of it (a paste from a password manager may
        bring a space or a line end); ``unlock`` forgives them too."""
        passphrase = unicodedata.normalize("NFC", passphrase.strip())  # see ``_tries``
        if not passphrase:
            raise UsageError("wallet_passphrase_empty")
        cls.refuse_existing(home)
        refuse_other_role(home, "wallet")
        path = home / WALLET_FILE
        seed = nacl.utils.random(32)
        public_key = bytes(signing_key(seed).verify_key)
        sealed = seal(seed, passphrase)
        doc = {"type": WALLET_TYPE, "public_key": b64url(public_key),
               "public_key_check": _key_check(public_key),
               "sealed_key": b64url(sealed), "created": datetime.now(UTC).isoformat(
                   timespec="seconds")}
        make_folders(home)
        # Two inits at once on one home would each see no wallet, and the second write would
        # replace the first's key after it was printed (and perhaps given to an office): the
        # check and the write are one step under the lock; the losers get ``wallet_exists``.
        with _locked(home):
            cls.refuse_existing(home)
            (home / CREDENTIALS_DIR).mkdir(exist_ok=True, mode=0o700)
            # One file holds both halves, so init is a single atomic write: no half-made wallet.
            atomic_write(path, (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
        return cls(home, public_key, sealed)

    @staticmethod
    def refuse_existing(home: Path) -> None:
        if (home / WALLET_FILE).exists():
            raise StoreError("wallet_exists", home=str(home))

    @classmethod
    def open(cls, home: Path) -> Wallet:
        _, public_key, sealed = _read_wallet_file(home)
        return cls(home, public_key, sealed)

    def holder_key(self, passphrase: str) -> nacl.signing.SigningKey:
        """Unseal the holder key (Argon2id: deliberately slow)."""
        return self.unlock(passphrase)[0]

    def unlock(self, passphrase: str) -> tuple[nacl.signing.SigningKey, Unlock]:
        """The holder key, and how ``passphrase`` opened it: as given; else without blanks at
        its ends; else with its letters' case inverted (``_tries``). At most three tries, each
        an Argon2id derivation (well under a second); a wrong passphrase is
        ``wallet_passphrase_wrong``, which says what a forgotten one means."""
        key, how, _ = self._open(passphrase)
        return key, how

    def _open(self, passphrase: str) -> tuple[nacl.signing.SigningKey, Unlock, str]:
        """As ``unlock``, and the passphrase the key is really sealed under (the try that
        opened it)."""
        for candidate, how in _tries(passphrase):
            try:
                seed = unseal(self._sealed, candidate)
            except StoreError as exc:
                if exc.code != "passphrase_wrong":
                    raise
                continue
            return self._checked(signing_key(seed)), how, candidate
        raise StoreError("wallet_passphrase_wrong", home=str(self.home))

    def change_passphrase(self, current: str | Callable[[], str],
                          new: str | Callable[[], str], *,
                          notice: Callable[[PasaporteError], None] | None = None) -> Unlock:
        """Seal the holder key anew under ``new``; return how ``current`` opened it.

        ``current`` is forgiven as ``unlock`` forgives it (``notice`` hears of caps lock before
        ``new`` is asked for, or the new one would be typed with caps lock on too); ``new`` is
        kept as ``create`` keeps a chosen passphrase, without blanks at its ends, and must
        still be ``MIN_PASSPHRASE`` long. Either may be a prompt, called in that order: a wrong
        current passphrase fails before the new one is asked for.

        A new passphrase the current one would still open the wallet with (itself, or its
        caps-lock typing: ``unlock`` forgives both) is refused, ``wallet_passphrase_unchanged``:
        the change exists to shut out whoever learnt the current one. The file is replaced in
        one ``atomic_write`` under the wallet's lock, so a crash leaves the old passphrase or
        the new one, and nothing but the sealed key changes (credentials are other files)."""
        key, how, sealed_under = self._open(current if isinstance(current, str) else current())
        if how == "caps_lock" and notice is not None:
            notice(PasaporteError("wallet_passphrase_caps_lock"))
        chosen = unicodedata.normalize("NFC", (new if isinstance(new, str) else new()).strip())
        if len(chosen) < MIN_PASSPHRASE:
            raise UsageError("passphrase_short", min=MIN_PASSPHRASE)
        if chosen in {candidate for candidate, _ in _tries(sealed_under)}:
            raise UsageError("wallet_passphrase_unchanged")
        # Sealed before the lock is taken: Argon2id is slow, and ``import`` and ``trust`` wait
        # on the same lock. The prompts above are outside it for the same reason.
        sealed = seal(bytes(key), chosen)
        with _locked(self.home):
            doc, public_key, on_disk = _read_wallet_file(self.home)
            if (on_disk, public_key) != (self._sealed, self.public_key):
                # Replaced since it was opened (another ``wallet passphrase`` ended first): what
                # is there now is what changes, if the current passphrase opens it too; if not,
                # that is ``wallet_passphrase_wrong``, and nothing is written.
                there, _, _ = Wallet(self.home, public_key, on_disk)._open(sealed_under)
                if bytes(there) != bytes(key):
                    key, sealed = there, seal(bytes(there), chosen)
            doc["sealed_key"] = b64url(sealed)
            # Kept, or added to a wallet made before it was: the key was just unsealed and
            # checked against the clear one, so this is the check of the right key.
            doc["public_key_check"] = _key_check(bytes(key.verify_key))
            atomic_write(self.home / WALLET_FILE,
                         (json.dumps(doc, indent=2) + "\n").encode("utf-8"))
        self.public_key, self._sealed = bytes(key.verify_key), sealed
        return how

    def _checked(self, key: nacl.signing.SigningKey) -> nacl.signing.SigningKey:
        # A clear public key edited by hand must not make us sign with a key it doesn't name.
        if bytes(key.verify_key) != self.public_key:
            raise StoreError("wallet_key_mismatch", file=str(self.home / WALLET_FILE))
        return key

    # -- credentials --------------------------------------------------------------------------
    # -- trust: the bundles that name catalogue codes and vouch for issuers --------------------
    @property
    def trust_dir(self) -> Path:
        return self.home / TRUST_DIR

    def trust(self, bundles: Sequence[bytes], roots: Sequence[bytes], *,
              notice: Callable[[PasaporteError], None] | None = None,
              bundle_files: Sequence[str] = (), root_files: Sequence[str] = ()) -> list[str]:
        """Verify bundles against city roots and keep them (newest version per city).

        A bundle older than the one held is not kept, and ``notice`` is told why (the resident
        asked for it: silence would read as done). Every file is checked before any is
        stored, so a refusal leaves what is trusted as it was; it names the file (from
        ``bundle_files`` / ``root_files``, in the order given) that failed. So does a file
        that cannot be written (a full disk): see ``_store_trust``."""
        root_keys = [_root_in(data, _file_name(root_files, n))
                     for n, data in enumerate(roots)]
        kept: dict[str, str] = {}  # city code → what is said of the bundle kept for it
        chosen: dict[str, tuple[RootKey, bytes]] = {}
        # Held throughout: what is trusted is read and replaced as one step, or two trusts at
        # once would each compare with the same old version and the older could be written last.
        with _locked(self.home):
            # a root already trusted for a code is never silently replaced by another city's
            held_roots, held_bundles, _ = self._read_trust()
            check_roots([*held_roots.values(), *root_keys])
            versions = {code: b.version for code, b in held_bundles.items()}
            for n, data in enumerate(bundles):
                bundle = _bundle_in(data, root_keys, _file_name(bundle_files, n))
                held = versions.get(bundle.code, -1)
                if held > bundle.version:
                    if notice is not None:
                        # (``code`` names the error itself: the city's is ``city_code``)
                        notice(PasaporteError("wallet_trust_older", city=bundle.city,
                                              city_code=bundle.code, held=held,
                                              version=bundle.version))
                    continue
                if bundle.code in chosen and held < bundle.version and notice is not None:
                    # an older one given first in this same call: said as not kept, not
                    # listed among those kept beside the newer
                    notice(PasaporteError("wallet_trust_older", city=bundle.city,
                                          city_code=bundle.code, held=bundle.version,
                                          version=held))
                versions[bundle.code] = bundle.version
                root = next(r for r in root_keys if r.code == bundle.code)
                chosen[bundle.code] = (root, data)
                kept[bundle.code] = f"{bundle.city} ({bundle.code}) v{bundle.version}"
            # Written only once every file has checked: a bad third bundle must not leave the
            # first stored by a command that says it failed.
            if chosen:
                make_folders(self.trust_dir)
                self._store_trust(chosen, held_roots)
        return list(kept.values())

    def _store_trust(self, chosen: Mapping[str, tuple[RootKey, bytes]],
                     held_roots: Mapping[str, RootKey]) -> None:
        """Put each chosen city's root and bundle in the trust folder: all of them, or, when a
        file cannot be written or put in place, none (what was there is put back).

        Every file is first staged (written and flushed under a hidden name), so a full disk
        fails before anything trusted changes. Then each city's root goes in place before its
        bundle, which makes each point a crash (SIGKILL, a power cut) can stop at safe:

        - a city trusted before: its root holds the same key (``check_roots``), so it is not
          written again unless its file says something else of it (a city's new spelling); the
          old bundle verifies against the new root file as the new bundle does against the old,
          and the crash leaves the old pair or the new one, each whole.
        - a city trusted anew: a crash between the two leaves its root without a bundle.
          ``_read_trust`` names that as a missing bundle, with the fix (trust it again), and
          the root, checked against that bundle before it was written, is one the resident
          chose. The other order would leave a bundle that no root verifies, not told from a
          copy of the folder that lost its root (damage).

        Ctrl-C and SIGTERM wait until the files are in place or put back."""
        staged: list[tuple[StagedFile, bool]] = []  # each file, and whether it replaces one
        try:
            for code, (root, data) in chosen.items():
                files = [(self.trust_dir / f"{code}.bundle", data)]
                if held_roots.get(code) != root:
                    files.insert(0, (self.trust_dir / f"{code}.root.json",
                                     root.to_json().encode()))
                for path, contents in files:
                    file = StagedFile(path)
                    staged.append((file, path.exists()))
                    file.write(contents)
            with uninterrupted():
                try:
                    for file, _ in staged:
                        try:
                            file.commit()
                        except OSError as exc:  # the hidden name is ours: name the file
                            raise type(exc)(exc.errno, exc.strerror, str(file.target)) from None
                except BaseException:
                    for file, replaces in reversed(staged):
                        # Without a hard link to the replaced file (a file system with none:
                        # a FAT stick), taking the commit back would delete it; the new file,
                        # whole and verified, is then the better one to leave.
                        if file.previous is not None or not replaces:
                            with contextlib.suppress(OSError):  # the first error is the one
                                file.undo()
                    raise
        finally:
            for file, _ in staged:
                file.discard()

    def _read_trust(self) -> tuple[dict[str, RootKey], dict[str, TrustBundle],
                                   list[StoreError]]:
        """The trusted roots (by the city code their file is named for) and verified bundles,
        and each file that cannot be read or no longer verifies (``wallet_trust_damaged``),
        which is left out: that city's passports then show only what the local clock says."""
        roots: dict[str, RootKey] = {}
        bundles: dict[str, TrustBundle] = {}
        problems: list[StoreError] = []
        try:
            names = os.listdir(self.trust_dir)
        except FileNotFoundError:  # nothing trusted yet
            return roots, bundles, problems
        except OSError:  # a file where the folder should be, or a folder that cannot be read
            return roots, bundles, [StoreError("wallet_trust_damaged", file=str(self.trust_dir))]
        # Each city with either file: a bundle whose root is gone (a partial copy of the
        # folder) is damage to name, and a root whose bundle is gone a bundle to trust again,
        # not a city untrusted.
        codes = {n[: -len(suffix)] for n in names for suffix in (".root.json", ".bundle")
                 if n.endswith(suffix)}
        for code in sorted(codes):
            root_file = self.trust_dir / f"{code}.root.json"
            bundle_file = self.trust_dir / f"{code}.bundle"
            try:
                roots[code] = RootKey.from_json(read_bounded(root_file, MAX_ROOT))
            except (OSError, UsageError, MalformedInput):
                problems.append(StoreError("wallet_trust_damaged", file=str(root_file)))
                continue
            try:
                raw = read_bounded(bundle_file, MAX_BUNDLE)
            except FileNotFoundError:
                # Not damage: a ``trust`` interrupted before its bundle was in place, or one by
                # a release that wrote the root first and could be stopped there.
                problems.append(StoreError("wallet_trust_bundle_missing", file=str(bundle_file),
                                           root=str(root_file), city=roots[code].city,
                                           city_code=code))
                continue
            except (OSError, UsageError):
                problems.append(StoreError("wallet_trust_damaged", file=str(bundle_file)))
                continue
            try:
                bundle = check_lists(parse_bundle(raw, [roots[code]]))
            except (UsageError, Rejection):
                problems.append(StoreError("wallet_trust_damaged", file=str(bundle_file)))
                continue
            bundles[bundle.code] = bundle
        return roots, bundles, problems

    def trust_problems(self) -> list[StoreError]:
        """The trusted files ``trusted_bundles`` leaves out, for the resident to hear why a
        revocation may not show."""
        return self._read_trust()[2]

    def trusted_bundles(self) -> dict[str, TrustBundle]:
        """City code → verified bundle; files that no longer verify are left out (named by
        ``trust_problems``)."""
        return self._read_trust()[1]

    def _check_issuer(self, decoded: Decoded) -> bool:
        """True: the issuer's signature checks against the city's trusted bundle; False: no
        bundle for that city (the counter will still check it at every presentation).

        Raises when the bundle cannot vouch for it: a signature that does not verify
        (``wallet_import_signature``), or a key the bundle does not list
        (``wallet_import_key_unknown``). The second is what a genuine passport meets after the
        city added an office or renewed a key, until the wallet trusts its newer bundle: to
        call it a bad signature would send the resident to the office over a forgery."""
        bundle = self.trusted_bundles().get(decoded.payload.iss)
        if bundle is None:
            return False
        signers = [k for k in bundle.keys if k.kid == decoded.credential.kid]
        if not signers:
            raise StoreError("wallet_import_key_unknown", issuer=decoded.payload.iss,
                             city=bundle.city, version=bundle.version)
        if not any(decoded.credential.verify(k.public_key) for k in signers):
            raise MalformedInput("wallet_import_signature", issuer=decoded.payload.iss)
        return True

    def import_text(self, text: str, *, source: str = "-") -> ImportResult:
        """Check a credential in transport text and store it under its id (idempotent).

        ``source`` names where the text came from (a file) in what is said of text that holds
        no whole passport, or several."""
        if len(text) > MAX_IMPORT_CHARS:
            raise MalformedInput("too_large")
        data = _unpacked(text, source)
        try:
            decoded = _check_credential(data, self.public_key)
        except MalformedInput as exc:
            if exc.code != "cbor_invalid":
                raise
            raise _refused_text(text, exc, source) from None  # its CBOR ends early: cut short
        cred_id = decoded.payload.credential_id
        path = self._path(cred_id)
        outcome: Literal["imported", "unchanged", "replaced"] = "imported"
        # Under the lock: the stored credential checked against is the one replaced.
        with _locked(self.home):
            vouched = self._check_issuer(decoded)
            digest, before = _digest(data), frozenset[str]()
            if path.exists():
                held = path.read_bytes()
                if held == data:
                    # (a damaged or missing record of its digest is mended by importing again)
                    self._record(cred_id, {digest})
                    return ImportResult(cred_id, "unchanged")
                # Same id, new bytes: the office re-issued this credential (new data or dates).
                self._refuse_foreign_reissue(cred_id, decoded, vouched=vouched)
                outcome = "replaced"
                # (one imported before digests were kept stands as it is until replaced)
                before = self._recorded_or_empty(cred_id) or frozenset({_digest(held)})
            make_folders(self.credentials_dir)
            # The digest is recorded before the bytes are put in place, beside the one of the
            # bytes they replace: a crash between the two writes leaves the old passport or
            # the new one, each with its digest recorded; then only the new one's is kept.
            self._record(cred_id, before | {digest})
            atomic_write(path, data)
            if before - {digest}:
                self._record(cred_id, {digest})
        return ImportResult(cred_id, outcome)

    def _digests_path(self, cred_id: str) -> Path:
        return self.credentials_dir / f"{cred_id}{DIGESTS}"

    def _recorded(self, cred_id: str) -> frozenset[str] | None:
        """The digests recorded for ``cred_id``'s bytes at import; None for a credential
        imported before they were kept. ``ValueError`` if the record itself is damaged."""
        try:
            raw = read_bounded(self._digests_path(cred_id), MAX_DIGESTS)
        except FileNotFoundError:
            return None
        except (OSError, UsageError):
            raise ValueError("unreadable digests") from None
        lines = raw.decode("ascii", errors="replace").split()
        if not lines or not all(_DIGEST.match(line) for line in lines):
            raise ValueError("damaged digests")
        return frozenset(lines)

    def _recorded_or_empty(self, cred_id: str) -> frozenset[str]:
        """As ``_recorded``, with nothing for no record or a damaged one (it is rewritten)."""
        try:
            return self._recorded(cred_id) or frozenset()
        except ValueError:
            return frozenset()

    def _record(self, cred_id: str, digests: set[str] | frozenset[str]) -> None:
        """Keep ``digests`` as those of ``cred_id``'s bytes (unless they are already)."""
        if self._recorded_or_empty(cred_id) != digests:
            atomic_write(self._digests_path(cred_id),
                         "".join(f"{d}\n" for d in sorted(digests)).encode("ascii"))

    def _refuse_foreign_reissue(self, cred_id: str, new: Decoded, *, vouched: bool) -> None:
        """Raise unless ``new`` can be the stored credential re-issued by the office that issued
        it. Whoever issues chooses the id (``credential_id`` in an office's claims), so an id
        alone would let any office, or anyone with a key, erase a resident's passport.

        Another city code (``iss``) never replaces it; the same city's only when the city's
        trusted bundle vouches for the signature: without one the wallet cannot check
        signatures at all, and a file copying the city's code and key id is easily made."""
        try:
            held = self.load(cred_id)
        except StoreError:
            return  # damaged on disk: the resident was told to import it again, and this is it
        if new.payload.iss != held.payload.iss:
            raise StoreError("wallet_import_other_issuer", id=cred_id, issuer=new.payload.iss,
                             held=held.payload.iss)
        if not vouched:
            raise StoreError("wallet_import_unverified_reissue", id=cred_id,
                             issuer=new.payload.iss)

    def _path(self, cred_id: str) -> Path:
        return self.credentials_dir / f"{cred_id}{SUFFIX}"

    def ids(self) -> list[str]:
        if not self.credentials_dir.is_dir():
            return []
        return sorted(p.name[: -len(SUFFIX)] for p in self.credentials_dir.iterdir()
                      if p.name.endswith(SUFFIX) and not p.name.startswith(".")
                      and _ID.match(p.name[: -len(SUFFIX)]))

    def resolve_id(self, cred_id: str) -> str:
        """The stored id that ``cred_id`` names exactly, or as an unambiguous prefix (blanks
        around it, as a copy and paste may bring, are not part of it)."""
        cred_id = cred_id.strip()
        ids = self.ids()
        if cred_id in ids:
            return cred_id
        matches = [i for i in ids if cred_id and i.startswith(cred_id)]
        if not matches:  # ids are printed in capitals; a resident may type them in lower case
            matches = [i for i in ids if cred_id and i.upper().startswith(cred_id.upper())]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UsageError("wallet_credential_ambiguous", id=escaped(cred_id[:80]),
                             matches=", ".join(matches))
        # escaped: an id pasted from a message may carry a terminal's control sequences
        raise StoreError("wallet_credential_unknown", id=escaped(cred_id[:80]),
                         known=", ".join(ids) or "—")

    def load(self, cred_id: str) -> Decoded:
        path = self._path(cred_id)
        try:
            # The digests read before and after the bytes: an import replacing this passport
            # meanwhile (not under our lock: ``present`` only reads) records the new digest
            # beside the old, replaces the bytes, then keeps the new one alone; whichever bytes
            # were read, one of the two reads holds their digest.
            before = self._recorded(cred_id)
            data = read_bounded(path, MAX_STORED)
            after = self._recorded(cred_id)
        except (OSError, UsageError, ValueError):
            raise StoreError("wallet_credential_corrupt", id=cred_id, file=str(path)) from None
        recorded = None if before is None and after is None else (before or set()) | (
            after or set())
        if recorded is not None and _digest(data) not in recorded:
            # Changed on disk since it was imported: a byte of the office's signature or of
            # the signed claims changes nothing the checks below see, and the counter would
            # call the passport forged; importing the office's file again mends it.
            raise StoreError("wallet_credential_corrupt", id=cred_id, file=str(path))
        try:
            return _check_credential(data, self.public_key)
        except StoreError as exc:
            if exc.code == "wallet_import_other_holder":
                # Whole, but made for another key: this home's wallet.json was made again (or
                # the file copied from another wallet). Importing it again can only fail; the
                # office must issue it for this wallet's key.
                raise StoreError("wallet_credential_other_holder", file=str(path),
                                 **exc.detail) from None
            raise StoreError("wallet_credential_corrupt", id=cred_id, file=str(path)) from None
        except (MalformedInput, OSError, UsageError):
            # A file that passed import and no longer checks was damaged or tampered with on disk.
            raise StoreError("wallet_credential_corrupt", id=cred_id, file=str(path)) from None

    def entries(self, now: int | None = None) -> tuple[list[CredentialEntry], list[StoreError]]:
        """Every stored credential, soonest to expire first; damaged files come back as errors
        so that one bad file does not hide the others."""
        now = int(time.time()) if now is None else now
        entries: list[CredentialEntry] = []
        problems: list[StoreError] = []
        bundles = self.trusted_bundles()
        for cred_id in self.ids():
            try:
                d = self.load(cred_id)
            except StoreError as exc:
                problems.append(exc)
                continue
            p = d.payload
            entries.append(CredentialEntry(
                id=p.credential_id, issuer=p.iss, valid_from=first_day(p.nbf),
                valid_until=last_day(p.exp), status=_status(d, bundles.get(p.iss), now),
                claims=_claims_view(d, bundles.get(p.iss))))
        entries.sort(key=lambda e: (e.valid_until, e.id))
        return entries, problems

    def status_of(self, cred_id: str, now: int | None = None) -> Status:
        """One stored passport's status, as ``entries`` gives it."""
        d = self.load(cred_id)
        bundle = self.trusted_bundles().get(d.payload.iss)
        return _status(d, bundle, int(time.time()) if now is None else now)

    def present(self, cred_id: str, *, service: str, passphrase: str | Callable[[], str],
                disclose: Sequence[str] | None = None, counter: str | None = None,
                nonce: bytes | None = None, now: int | None = None) -> Presentation:
        """A presentation signed by the holder key at ``now`` (default: the local clock).

        ``passphrase`` may be a prompt, called only once the service, the disclosures and the
        credential have been checked: a typo fails before the (slow, interactive) unlock."""
        service = service_for(service)
        groups = groups_for(service, disclose)
        audience = audience_for(service, counter)
        decoded = self.load(self.resolve_id(cred_id))
        holder, unlocked = self.unlock(passphrase if isinstance(passphrase, str)
                                       else passphrase())
        # The moment of signing, after the unlock: a passphrase looked up for two minutes in a
        # queue took those minutes off the counter's freshness window ("possible screenshot").
        now = int(time.time()) if now is None else now
        cbor_bytes = present(decoded.credential.to_list(), decoded.in_leaf_order(),
                             groups=groups, holder=holder, audience=audience, now=now,
                             nonce=nonce)
        p = decoded.payload
        bundle = self.trusted_bundles().get(p.iss)
        # What the wallet knows has happened: the passport was signed, the bundle was made.
        # The clock may be wrong the other way too (ahead); that only the counter can tell.
        # Counters hold only the bundle's making to their clock (``counter_clock_behind``), not
        # the passport's signing: so only a bundle made a day ahead of this clock says they
        # will refuse the code; a passport signed ahead (the office's clock fast) they accept.
        made = bundle.made_at if bundle is not None else 0
        known = max(p.iat, made)
        behind = known - now
        refused = made - now > OFFICE_CLOCK_AHEAD_S
        spec = schema().services[service]
        asked = spec.discloses
        return Presentation(transport.pack(cbor_bytes), p.credential_id, groups, audience,
                            _status(decoded, bundle, now),
                            missing=tuple(g for g in asked if g not in groups),
                            service=service, unlocked=unlocked,
                            clock_behind=made if refused else None,
                            clock_differs=known if behind > CLOCK_SLACK and not refused
                            else None,
                            valid_from=first_day(p.nbf),
                            # As a counter decides (``not_eligible``); the claim left out
                            # is ``missing`` instead.
                            ineligible=not_eligible(spec.eligibility,
                                                    {g: decoded.groups.get(g, {})
                                                     for g in groups}))
