"""Trust: city root keys and the signed trust bundles a counter verifies against, offline.

A *root* is one city's long-lived Ed25519 key, configured once at each counter (a small JSON file).
A *trust bundle* is a COSE_Sign1 by that root whose payload (CBOR) lists the city's issuing-office
keys, its current status lists, the catalogs that compact codes in credentials refer to (cities,
library systems, clinic networks) and when it was made. Bundles are versioned: a counter keeps the
newest version per city.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import cbor2
import nacl.signing

from credential import cbor, cose, jsontext
from credential.errors import MalformedInput, Rejection, UsageError
from credential.keys import b64url, kid_for, unb64url
from credential.statuslist import PURPOSES, Purpose, StatusList
from credential.text import escaped

__all__ = ["CITY_CODE", "MAX_BUNDLE", "MAX_LIST_BYTES", "MAX_ROOT", "OfficeKey", "RootKey",
           "StatusListInfo", "TrustBundle", "check_lists", "check_roots", "claimed_edition",
           "parse_bundle", "sign_bundle"]

MAX_BUNDLE = 4 * 1024 * 1024
MAX_ROOT = 64 * 1024  # a root key file: a few hundred bytes of JSON
# What a counter inflates, at most, of one bundle's status lists (each list's declared size, in
# bytes of bitstring, summed over lists and purposes). One list is bounded on its own
# (``statuslist.MAX_SIZE``), but 1 MB of zeros deflates to 1 KB: a 4 MB bundle of thousands of
# lists made a counter take 4 GB and 40 s at start, stopping it for every city. 32 MB is 128
# million credentials per purpose, some 60 times the largest city of the border.
MAX_LIST_BYTES = 32 * 1024 * 1024
BUNDLE_TYPE = "pasaporte-trust-bundle/1"
# A city's issuer code: the CWT ``iss`` of its credentials, the prefix of its status lists'
# names, and the name of the files a wallet keeps its root and bundle in. So no "/": a root or
# bundle whose code was "../trust/MXMEX" replaced another city's trusted files in a wallet.
CITY_CODE = re.compile(r"[A-Za-z0-9._:-]{1,48}")


@dataclass(frozen=True)
class RootKey:
    city: str
    country: str
    code: str  # the CWT ``iss`` of this city's credentials
    public_key: bytes

    @property
    def kid(self) -> bytes:
        return kid_for(self.public_key)

    def to_json(self) -> str:
        return json.dumps({"type": "pasaporte-city-root/1", "city": self.city,
                           "country": self.country, "code": self.code, "kid": b64url(self.kid),
                           "public_key": b64url(self.public_key)}, ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> RootKey:
        try:
            doc = jsontext.loads(text)
            root = cls(str(doc["city"]), str(doc["country"]), str(doc["code"]),
                       unb64url(str(doc["public_key"]), length=32, what="public_key"))
        except (ValueError, KeyError, TypeError):
            raise MalformedInput("root_invalid", reason="not a city root file") from None
        except MalformedInput:  # the key itself: the file is what the counter was given
            raise MalformedInput("root_invalid",
                                 reason="public_key is not 32 bytes of base64url") from None
        if "kid" in doc and doc["kid"] != b64url(root.kid):
            raise MalformedInput("root_invalid", reason="kid does not match the key")
        if not CITY_CODE.fullmatch(root.code):
            raise MalformedInput("root_invalid", reason="code is not a city code (letters, "
                                 "digits and . _ : -, at most 48)")
        return root


@dataclass(frozen=True)
class OfficeKey:
    kid: bytes
    public_key: bytes
    office: str
    valid_from: int
    valid_until: int
    compromised_since: int | None = None
    status_list: int = 0


@dataclass(frozen=True)
class StatusListInfo:
    list_id: int
    purpose: Purpose
    size: int
    data: bytes  # zlib-compressed bitstring
    updated: int


@dataclass(frozen=True)
class TrustBundle:
    city: str
    country: str
    code: str
    version: int
    made_at: int
    keys: tuple[OfficeKey, ...]
    status_lists: tuple[StatusListInfo, ...]
    catalogs: Mapping[str, Mapping[int, str]] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {
            "type": BUNDLE_TYPE, "city": self.city, "country": self.country, "code": self.code,
            "version": self.version, "made_at": self.made_at,
            "keys": [[k.kid, k.public_key, k.office, k.valid_from, k.valid_until,
                      k.compromised_since, k.status_list] for k in self.keys],
            "status_lists": [[s.list_id, s.purpose, s.size, s.data, s.updated]
                             for s in self.status_lists],
            "catalogs": {name: dict(entries) for name, entries in self.catalogs.items()},
        }


def sign_bundle(bundle: TrustBundle, root: nacl.signing.SigningKey) -> bytes:
    payload = cbor.dumps(bundle.to_payload())
    return cbor2.dumps(cose.sign1(root, payload, kid=kid_for(bytes(root.verify_key))))


def _bad(reason: str) -> MalformedInput:
    return MalformedInput("bundle_invalid", reason=reason)


def _int(v: Any) -> int:
    if type(v) is not int or not 0 <= v < 2**48:
        raise _bad("integer expected")
    return v


def _text(v: Any, limit: int = 200) -> str:
    if not isinstance(v, str) or not 0 < len(v) <= limit:
        raise _bad("text expected")
    return v


def _payload(doc: Any) -> TrustBundle:
    if not isinstance(doc, dict) or doc.get("type") != BUNDLE_TYPE:
        raise _bad("not a trust bundle")
    keys_raw, lists_raw, cats_raw = doc.get("keys"), doc.get("status_lists"), doc.get("catalogs")
    if not (isinstance(keys_raw, list) and isinstance(lists_raw, list)
            and isinstance(cats_raw, dict)):
        raise _bad("missing sections")
    keys = []
    for k in keys_raw:
        if not (isinstance(k, list) and len(k) == 7 and isinstance(k[0], bytes)
                and isinstance(k[1], bytes) and len(k[1]) == 32):
            raise _bad("office key")
        keys.append(OfficeKey(k[0], k[1], _text(k[2]), _int(k[3]), _int(k[4]),
                              None if k[5] is None else _int(k[5]), _int(k[6])))
    lists: list[StatusListInfo] = []
    seen: set[tuple[int, str]] = set()
    inflated = 0
    for s in lists_raw:
        # a str before the set lookup: a list or map there is unhashable (TypeError)
        if not (isinstance(s, list) and len(s) == 5 and isinstance(s[1], str)
                and s[1] in PURPOSES and isinstance(s[3], bytes)):
            raise _bad("status list")
        info = StatusListInfo(_int(s[0]), cast(Purpose, s[1]), _int(s[2]), s[3], _int(s[4]))
        # Checked before anything is inflated (the counter does so as it loads the bundle).
        inflated += (info.size + 7) // 8
        if inflated > MAX_LIST_BYTES:
            raise _bad("status lists too large in all")
        # Two lists for one office and purpose: a counter would keep one and a wallet read the
        # other, and a passport be revoked to one and valid to the other.
        if (info.list_id, info.purpose) in seen:
            raise _bad("status list repeated")
        seen.add((info.list_id, info.purpose))
        lists.append(info)
    catalogs: dict[str, dict[int, str]] = {}
    for name, entries in cats_raw.items():
        if not isinstance(entries, dict):
            raise _bad("catalog")
        catalogs[_text(name)] = {_int(c): _text(n) for c, n in entries.items()}
    code = _text(doc.get("code"), 64)
    if not CITY_CODE.fullmatch(code):
        raise _bad("code is not a city code")
    return TrustBundle(_text(doc.get("city")), _text(doc.get("country"), 2),
                       code, _int(doc.get("version")),
                       _int(doc.get("made_at")), tuple(keys), tuple(lists), catalogs)


def _claimed(payload: bytes) -> tuple[str, str]:
    """The city and code an unverified bundle's payload names, escaped; "?" where it names
    none readable."""
    try:
        doc = cbor.loads(payload, max_size=MAX_BUNDLE, max_items=1 << 16)
    except MalformedInput:
        return "?", "?"
    if not isinstance(doc, dict):
        return "?", "?"
    city, code = doc.get("city"), doc.get("code")
    return (escaped(city[:64]) if isinstance(city, str) and city else "?",
            escaped(code[:64]) if isinstance(code, str) and code else "?")


def claimed_edition(data: bytes) -> tuple[str, int] | None:
    """The city and version a signed bundle's payload names, its signature unchecked (None
    where it names none readable): what a proof of its publication must name too, before
    the bundle itself is verified against a root."""
    try:
        obj = cbor.loads(data, max_size=MAX_BUNDLE, max_items=1 << 16,
                         allowed_tags={cose.TAG_SIGN1})
        doc = cbor.loads(cose.parse_sign1(obj).payload, max_size=MAX_BUNDLE, max_items=1 << 16)
    except MalformedInput:
        return None
    if not isinstance(doc, dict):
        return None
    city, version = doc.get("city"), doc.get("version")
    if not isinstance(city, str) or type(version) is not int:
        return None
    return city, version


def check_roots(roots: Sequence[RootKey]) -> None:
    """Refuse two different roots claiming one city code. A credential names its city by code
    alone (the CWT ``iss``), and a counter keeps one bundle per code: with two such roots one
    city's bundle would silently hide the other's, and its residents would be turned away. The
    same root given twice is harmless."""
    seen: dict[str, RootKey] = {}
    for root in roots:
        other = seen.setdefault(root.code, root)
        if other.public_key != root.public_key:
            raise UsageError("roots_conflict", city_code=root.code,
                             cities=f"{other.city} {other.country}, {root.city} {root.country}")


def parse_bundle(data: bytes, roots: Sequence[RootKey]) -> TrustBundle:
    """Verify a bundle against the configured city roots and return its contents."""
    # A bundle is a setup file, not a scanned code: its damage is said as the bundle's, not in
    # the words meant for a resident's QR code (cbor_invalid, cose_invalid).
    try:
        obj = cbor.loads(data, max_size=MAX_BUNDLE, max_items=1 << 16,
                         allowed_tags={cose.TAG_SIGN1})
    except MalformedInput:
        raise _bad("not CBOR") from None
    try:
        signed = cose.parse_sign1(obj)
    except MalformedInput:
        raise _bad("not a COSE_Sign1 signed by a city root") from None
    candidates = [r for r in roots if signed.kid is None or r.kid == signed.kid]
    root = next((r for r in candidates if signed.verify(r.public_key)), None)
    if root is None:
        # Named by the city it says it is of (unverified, and only named): with several
        # cities' files, which root is missing or swapped is what the clerk needs to know.
        city, code = _claimed(signed.payload)
        raise Rejection("bundle_untrusted", city=city, city_code=code)
    try:
        contents = cbor.loads(signed.payload, max_size=MAX_BUNDLE, max_items=1 << 16)
    except MalformedInput:
        raise _bad("contents not CBOR") from None
    bundle = _payload(contents)
    if (bundle.city, bundle.country, bundle.code) != (root.city, root.country, root.code):
        raise _bad("bundle's city, country or city code differs from its root's")
    return bundle


def check_lists(bundle: TrustBundle) -> TrustBundle:
    """``bundle`` once every status list of it inflates whole (``statuslist_invalid``
    otherwise): what a counter finds as it loads one, found by whoever keeps a bundle without
    loading it (a wallet took a damaged one, and then listed none of its passports)."""
    for s in bundle.status_lists:
        StatusList.from_compressed(s.purpose, s.size, s.data)
    return bundle
