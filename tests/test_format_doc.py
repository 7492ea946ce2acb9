"""docs/format.md, implemented a second time from the document alone, and held to the project.

Everything that *builds* or *reads* a passport here is written from docs/format.md: base45, the
``PU1:`` envelope and its zlib rule, COSE_Sign1, the CWT claims, the disclosures and their tree,
the multiproof, the key binding and its external AAD, the city root file, the trust bundle and
its status lists. cbor2 serves only as a plain CBOR encoder and decoder, pynacl only as Ed25519.
The project is the other side and nothing more: its office (``tests.factory.City``) issues, its
wallet presents, its counter (``verifier.engine.Verifier``) decides. Interop is checked both
ways, so another city's team that follows the document gets what these tests get.

The document cannot drift silently either: its constants (context string, prefix, claim keys,
group keys) are read back from its tables, and its worked example is rebuilt byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import nacl.exceptions
import nacl.signing
import pytest

from credential.bundle import RootKey  # the counter's side: how it reads a root file
from tests.factory import NOW, City, example_claims, presentation
from verifier.engine import Verifier
from verifier.policy import Policy

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"

# -- the constants, as docs/format.md states them ---------------------------------------------
PREFIX = "PU1:"
KB_CONTEXT = "PU1 key binding"
ISS, AUD, EXP, NBF, IAT, CTI, CNF, CNONCE = 1, 3, 4, 5, 6, 7, 8, 39
PRIVATE = -65537  # [status list id, status index, disclosure root]
CLAIM_KEYS = {"iss": ISS, "aud": AUD, "exp": EXP, "nbf": NBF, "iat": IAT, "cti": CTI,
              "cnf": CNF, "cnonce": CNONCE}
HDR_ALG, HDR_CRIT, HDR_KID, ALG_EDDSA, ALG_ED25519 = 1, 2, 4, -8, -19
TAG_SIGN1, TAG_CWT = 18, 61
SALT_LEN = 16
DIGEST_LEN = 16
KID_LEN = 4
# group name → (CBOR key, leaf index)
GROUPS = {"residence": (1, 0), "library": (2, 1), "transit": (3, 2), "clinic": (4, 3),
          "names": (5, 4), "birth_date": (6, 5), "preferred_language": (7, 6)}
N_GROUPS = len(GROUPS)
SERVICES = {"library": ("residence", "library"), "transit": ("residence", "transit"),
            "clinic": ("names", "birth_date", "residence", "clinic")}
BUNDLE_TYPE = "pasaporte-trust-bundle/1"
ROOT_TYPE = "pasaporte-city-root/1"
MAX_INFLATED = 8192

# -- base45 (RFC 9285) and the QR text -----------------------------------------------------------
B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


def b45encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] << 8 | data[i + 1]
        out += [B45[n % 45], B45[n // 45 % 45], B45[n // 2025]]
    if len(data) % 2:
        out += [B45[data[-1] % 45], B45[data[-1] // 45]]
    return "".join(out)


def b45decode(text: str) -> bytes:
    digits = [B45.index(c) for c in text.upper()]  # caps lock: lower case reads as upper
    if len(digits) % 3 == 1:
        raise ValueError("impossible base45 length")
    out = bytearray()
    for i in range(0, len(digits), 3):
        chunk = digits[i:i + 3]
        n = sum(d * 45 ** j for j, d in enumerate(chunk))
        if n >= 1 << (8 * (len(chunk) - 1)):
            raise ValueError("base45 group out of range")
        out += n.to_bytes(len(chunk) - 1, "big")
    return bytes(out)


def pack(envelope: bytes, *, compress: bool | None = None) -> str:
    """``PU1:`` + base45 of the envelope, zlib-compressed only when that is strictly smaller."""
    packed = zlib.compress(envelope, 9)
    use = len(packed) < len(envelope) if compress is None else compress
    return PREFIX + b45encode(packed if use else envelope)


def is_zlib(data: bytes) -> bool:
    return bool(data) and (data[0] == 0x78 or (
        len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7
        and (data[0] << 8 | data[1]) % 31 == 0))


def unpack(text: str) -> bytes:
    text = text.strip()
    if text[:len(PREFIX)].upper() != PREFIX:
        raise ValueError("not a PU1 code")
    data = b45decode(text[len(PREFIX):])
    if not is_zlib(data):
        return data
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, MAX_INFLATED + 1)
    if len(out) > MAX_INFLATED or not inflater.eof or inflater.unused_data:
        raise ValueError("zlib stream too large, truncated or followed by bytes")
    return out


# -- COSE_Sign1, Ed25519 only ----------------------------------------------------------------
def sig_structure(protected: bytes, payload: bytes, aad: bytes = b"") -> bytes:
    return cbor2.dumps(["Signature1", protected, aad, payload])


def sign1(key: nacl.signing.SigningKey, payload: bytes, *, kid: bytes | None = None,
          aad: bytes = b"") -> list[Any]:
    header: dict[int, Any] = {HDR_ALG: ALG_EDDSA}
    if kid is not None:
        header[HDR_KID] = kid
    protected = cbor2.dumps(header, canonical=True)
    signature = key.sign(sig_structure(protected, payload, aad)).signature
    return [protected, {}, payload, signature]


def untagged(obj: Any) -> list[Any]:
    """A COSE_Sign1 as its four elements: bare, under tag 18, or under tag 61 over tag 18."""
    if isinstance(obj, cbor2.CBORTag) and obj.tag == TAG_CWT:
        obj = obj.value
        assert isinstance(obj, cbor2.CBORTag), "tag 61 must wrap tag 18"
    if isinstance(obj, cbor2.CBORTag):
        assert obj.tag == TAG_SIGN1
        obj = obj.value
    assert isinstance(obj, list | tuple) and len(obj) == 4
    protected, unprotected, payload, signature = obj
    assert isinstance(protected, bytes) and 0 < len(protected) <= 64
    assert isinstance(unprotected, Mapping) and HDR_CRIT not in unprotected
    assert isinstance(payload, bytes) and isinstance(signature, bytes) and len(signature) == 64
    header = cbor2.loads(protected)
    assert header[HDR_ALG] in (ALG_EDDSA, ALG_ED25519) and HDR_CRIT not in header
    return [protected, dict(unprotected), payload, signature]


def kid_in(msg: Sequence[Any]) -> bytes | None:
    kid = cbor2.loads(msg[0]).get(HDR_KID)
    if kid is None:
        kid = msg[1].get(HDR_KID)
    assert kid is None or isinstance(kid, bytes)
    return kid


def verify1(msg: Sequence[Any], public_key: bytes, aad: bytes = b"") -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(sig_structure(msg[0], msg[2], aad), msg[3])
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def kid_of(public_key: bytes) -> bytes:
    return hashlib.sha256(public_key).digest()[:KID_LEN]


def public(key: nacl.signing.SigningKey) -> bytes:
    return bytes(key.verify_key)


# -- the disclosure tree ---------------------------------------------------------------------
def leaf_digest(disclosure: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + disclosure).digest()[:DIGEST_LEN]


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()[:DIGEST_LEN]


def split(n: int) -> int:
    """The largest power of two below ``n`` (n ≥ 2): RFC 9162's split."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_root(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = split(len(leaves))
    return node(tree_root(leaves[:k]), tree_root(leaves[k:]))


def multiproof(leaves: Sequence[bytes], shown: set[int]) -> list[bytes]:
    """The hashes of the largest subtrees holding no shown leaf, left to right."""
    out: list[bytes] = []

    def walk(lo: int, hi: int) -> None:
        if not any(lo <= i < hi for i in shown):
            out.append(tree_root(leaves[lo:hi]))
        elif hi - lo > 1:
            k = split(hi - lo)
            walk(lo, lo + k)
            walk(lo + k, hi)

    walk(0, len(leaves))
    return out


def root_from_proof(n: int, known: Mapping[int, bytes], proof: Sequence[bytes]) -> bytes:
    hashes: Iterator[bytes] = iter(proof)

    def walk(lo: int, hi: int) -> bytes:
        if not any(lo <= i < hi for i in known):
            h = next(hashes, None)
            if h is None:
                raise ValueError("proof too short")
            return h
        if hi - lo == 1:
            return known[lo]
        k = split(hi - lo)
        left = walk(lo, lo + k)
        return node(left, walk(lo + k, hi))

    root = walk(0, n)
    if next(hashes, None) is not None:
        raise ValueError("proof too long")
    return root


# -- credentials and presentations -----------------------------------------------------------
@dataclass(frozen=True)
class Issued:
    cose: list[Any]
    disclosures: list[bytes]  # in leaf order

    def envelope(self) -> bytes:
        return cbor2.dumps([self.cose, self.disclosures])


def issue(office: nacl.signing.SigningKey, values: Mapping[int, list[Any]], *, iss: str,
          iat: int, nbf: int, exp: int, cti: bytes, status: tuple[int, int],
          holder: bytes | None, salts: Mapping[int, bytes] | None = None) -> Issued:
    """``values``: each group's CBOR array, by group key."""
    disclosures = []
    for _name, (key, _index) in sorted(GROUPS.items(), key=lambda g: g[1][1]):
        salt = salts[key] if salts is not None else _random_salt()
        disclosures.append(cbor2.dumps([salt, key, values[key]]))
    claims: dict[int, Any] = {ISS: iss, EXP: exp, NBF: nbf, IAT: iat, CTI: cti}
    if holder is not None:
        claims[CNF] = {1: {1: 1, -1: 6, -2: holder}}
    claims[PRIVATE] = [status[0], status[1], tree_root([leaf_digest(d) for d in disclosures])]
    payload = cbor2.dumps(claims, canonical=True)
    return Issued(sign1(office, payload, kid=kid_of(public(office))), disclosures)


def _random_salt() -> bytes:
    return os.urandom(SALT_LEN)


def credential_digest(cose: Sequence[Any]) -> bytes:
    """SHA-256 of the CBOR array [protected, payload, signature]: no unprotected header."""
    return hashlib.sha256(cbor2.dumps([cose[0], cose[2], cose[3]])).digest()


def kb_aad(digest: bytes, shown_leaves: Sequence[bytes]) -> bytes:
    return cbor2.dumps([KB_CONTEXT, digest, list(shown_leaves)])


def present_parts(cose: list[Any], disclosures: Sequence[bytes], shown: Sequence[int], *,
                  holder: nacl.signing.SigningKey, aud: str, iat: Any,
                  nonce: bytes | None = None) -> list[Any]:
    """The presentation array; ``shown``: leaf indices in the order they are put in."""
    leaves = [leaf_digest(d) for d in disclosures]
    claims: dict[int, Any] = {AUD: aud, IAT: iat}
    if nonce is not None:
        claims[CNONCE] = nonce
    aad = kb_aad(credential_digest(cose), [leaves[i] for i in shown])
    kb = sign1(holder, cbor2.dumps(claims, canonical=True), aad=aad)
    return [cose, [disclosures[i] for i in shown], multiproof(leaves, set(shown)), kb]


def present(cose: list[Any], disclosures: Sequence[bytes], groups: Sequence[str], *,
            holder: nacl.signing.SigningKey, aud: str, iat: int,
            nonce: bytes | None = None) -> bytes:
    shown = sorted(GROUPS[g][1] for g in groups)  # ascending group order
    return cbor2.dumps(present_parts(cose, disclosures, shown, holder=holder, aud=aud, iat=iat,
                                     nonce=nonce))


# -- reading a code the way docs/format.md tells a counter to ----------------------------------
@dataclass(frozen=True)
class Envelope:
    cose: list[Any]
    claims: dict[Any, Any]
    disclosures: list[bytes]
    items: list[list[Any]]  # decoded [salt, key, value]
    proof: list[bytes] | None
    kb: list[Any] | None

    def indices(self) -> list[int]:
        by_key = {key: index for key, index in GROUPS.values()}
        return [by_key[item[1]] for item in self.items]

    def computed_root(self) -> bytes:
        known = dict(zip(self.indices(), map(leaf_digest, self.disclosures), strict=True))
        if self.proof is None:
            return tree_root([known[i] for i in range(N_GROUPS)])
        return root_from_proof(N_GROUPS, known, self.proof)


def read(text: str) -> Envelope:
    obj = cbor2.loads(unpack(text))
    assert isinstance(obj, list) and len(obj) in (2, 4)
    cose = untagged(obj[0])
    claims = cbor2.loads(cose[2])
    assert all(type(claims[k]) is int for k in (IAT, NBF, EXP))  # whole seconds only
    assert isinstance(claims[ISS], str) and isinstance(claims[CTI], bytes)
    list_id, index, root = claims[PRIVATE]
    assert type(list_id) is int and type(index) is int and len(root) == DIGEST_LEN
    items = [cbor2.loads(d) for d in obj[1]]
    for item in items:
        assert len(item) == 3 and len(item[0]) == SALT_LEN and type(item[1]) is int
    keys = [item[1] for item in items]
    assert keys == sorted(set(keys)), "disclosures in ascending group order, none twice"
    if len(obj) == 2:
        return Envelope(cose, claims, list(obj[1]), items, None, None)
    assert all(len(h) == DIGEST_LEN for h in obj[2])
    return Envelope(cose, claims, list(obj[1]), items, list(obj[2]), untagged(obj[3]))


@dataclass(frozen=True)
class Bundle:
    city: str
    code: str
    version: int
    made_at: int
    keys: dict[bytes, list[Any]]  # by kid
    lists: dict[tuple[int, str], bytes]  # (list id, purpose) → inflated bitstring
    catalogs: dict[str, dict[int, str]]

    def marked(self, list_id: int, purpose: str, index: int) -> bool:
        bits = self.lists[list_id, purpose]
        return bool(bits[index >> 3] & (0x80 >> (index & 7)))  # bit 0: first byte's MSB


def read_root(text: str) -> tuple[dict[str, Any], bytes]:
    doc = json.loads(text)
    key = base64.urlsafe_b64decode(doc["public_key"] + "==")
    assert len(key) == 32
    if "kid" in doc:
        assert doc["kid"] == b64url(kid_of(key))
    return doc, key


def read_bundle(data: bytes, root_text: str) -> Bundle:
    root, root_key = read_root(root_text)
    signed = untagged(cbor2.loads(data))
    assert kid_in(signed) in (None, kid_of(root_key))
    assert verify1(signed, root_key)
    doc = cbor2.loads(signed[2])
    assert doc["type"] == BUNDLE_TYPE
    assert (doc["city"], doc["country"], doc["code"]) == (root["city"], root["country"],
                                                          root["code"])
    lists = {}
    for list_id, purpose, size, data_z, _updated in doc["status_lists"]:
        bits = zlib.decompress(data_z)
        assert size % 8 == 0 and len(bits) == size // 8
        lists[list_id, purpose] = bits
    return Bundle(doc["city"], doc["code"], doc["version"], doc["made_at"],
                  {k[0]: list(k) for k in doc["keys"]}, lists,
                  {name: dict(entries) for name, entries in doc["catalogs"].items()})


def verify_with_doc(text: str, bundle: Bundle, *, service: str | None, now: int,
                    freshness: int = 120, skew: int = 300) -> Envelope:
    """The doc's checks, in the doc's order, by assertion: what a counter built from it does."""
    env = read(text)
    office = bundle.keys[kid_in(env.cose) or b""]
    kid, key, _name, key_from, key_until, compromised, _list = office
    assert kid == kid_in(env.cose) and verify1(env.cose, key), "office signature"
    c = env.claims
    assert c[ISS] == bundle.code
    assert key_from <= c[IAT] <= key_until and (compromised is None or c[IAT] < compromised)
    assert c[NBF] <= now + skew and now - skew < c[EXP]
    assert env.computed_root() == c[PRIVATE][2], "disclosure root"
    if env.kb is None:
        assert CNF not in c and len(env.disclosures) == N_GROUPS
        return env
    holder = c[CNF][1]
    assert (holder[1], holder[-1], len(holder[-2])) == (1, 6, 32)
    aad = kb_aad(credential_digest(env.cose), [leaf_digest(d) for d in env.disclosures])
    assert verify1(env.kb, holder[-2], aad), "holder signature"
    kb = cbor2.loads(env.kb[2])
    assert type(kb[IAT]) is int and kb[IAT] <= now + skew and now - kb[IAT] <= freshness
    assert kb[AUD].partition(":")[0] == service
    list_id, index = c[PRIVATE][0], c[PRIVATE][1]
    assert not bundle.marked(list_id, "revocation", index)
    assert not bundle.marked(list_id, "suspension", index)
    return env


# -- a city built from the document: root file, bundle, office key -----------------------------
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def root_file(root: nacl.signing.SigningKey, *, city: str, country: str, code: str) -> str:
    return json.dumps({"type": ROOT_TYPE, "city": city, "country": country, "code": code,
                       "kid": b64url(kid_of(public(root))),
                       "public_key": b64url(public(root))}, ensure_ascii=False, indent=2)


def status_list(size: int, marked: Sequence[int] = ()) -> bytes:
    bits = bytearray(size // 8)
    for i in marked:
        bits[i >> 3] |= 0x80 >> (i & 7)
    return zlib.compress(bytes(bits), 9)


def make_bundle(root: nacl.signing.SigningKey, *, city: str, country: str, code: str,
                version: int, made_at: int, keys: list[list[Any]], lists: list[list[Any]],
                catalogs: Mapping[str, Mapping[int, str]]) -> bytes:
    payload = {"type": BUNDLE_TYPE, "city": city, "country": country, "code": code,
               "version": version, "made_at": made_at, "keys": keys, "status_lists": lists,
               "catalogs": {name: dict(entries) for name, entries in catalogs.items()}}
    signed = sign1(root, cbor2.dumps(payload, canonical=True), kid=kid_of(public(root)))
    return cbor2.dumps(signed)


# The example resident (tests/examples/claims-mexicali.json), each group as its CBOR array;
# catalogued names as code 1 of their catalogs.
VALUES: dict[int, list[Any]] = {
    1: [1, "MX", 16587],  # residence: city #1, MX, since 2015-06-01 (day 16587)
    2: [True, 1],  # library: eligible, system #1
    3: [2],  # transit: senior
    4: [True, 1],  # clinic: eligible, network #1
    5: ["María Guadalupe", "Hernández López"],
    6: [6281],  # birth date 1987-03-14
    7: [0],  # preferred language: es
}
CATALOGS = {"city": {1: "Mexicali"}, "library": {1: "Bibliotecas Públicas de Mexicali"},
            "clinic": {1: "Red Binacional de Salud Comunitaria"}}
DAY = 86400


@dataclass
class DocCity:
    """A city whose every file comes from this module: what another city's team would build."""

    root: nacl.signing.SigningKey
    office: nacl.signing.SigningKey
    made_at: int
    code: str = "MXMEX"
    revoked: tuple[int, ...] = ()
    suspended: tuple[int, ...] = ()

    def root_text(self) -> str:
        return root_file(self.root, city="Mexicali", country="MX", code=self.code)

    def bundle(self) -> bytes:
        office = public(self.office)
        return make_bundle(
            self.root, city="Mexicali", country="MX", code=self.code, version=1,
            made_at=self.made_at,
            keys=[[kid_of(office), office, "Oficina Municipal Centro",
                   self.made_at - 365 * DAY, self.made_at + 5 * 365 * DAY, None, 1]],
            lists=[[1, "revocation", 131072, status_list(131072, self.revoked), self.made_at],
                   [1, "suspension", 131072, status_list(131072, self.suspended),
                    self.made_at]],
            catalogs=CATALOGS)

    def issue(self, holder: bytes | None, *, index: int = 1, iat: int | None = None,
              salts: Mapping[int, bytes] | None = None, cti: bytes | None = None) -> Issued:
        iat = self.made_at if iat is None else iat
        first = iat // DAY * DAY - DAY  # valid from yesterday (UTC) for three years
        return issue(self.office, VALUES, iss=self.code, iat=iat, nbf=first,
                     exp=first + 1096 * DAY, cti=cti or _random_salt()[:8], status=(1, index),
                     holder=holder, salts=salts)

    def counter(self) -> Verifier:
        return Verifier(bundles=[self.bundle()], roots=[RootKey.from_json(self.root_text())])


def doc_city() -> DocCity:
    return DocCity(nacl.signing.SigningKey.generate(), nacl.signing.SigningKey.generate(), NOW)


# -- the document itself ------------------------------------------------------------------------
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def doc_table(heading: str) -> list[list[str]]:
    """The rows of the first Markdown table under ``heading`` (cells stripped of backticks)."""
    text = doc_text()
    start = text.index(heading)
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            cells = [c.strip().strip("`").strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the header row


def doc_vector() -> dict[str, str]:
    """The ``name: value`` lines of the worked example's code blocks (continuations indented)."""
    text = doc_text()
    start = text.index("## 13. Worked example")
    section = text[start:text.index("\n## ", start)]
    values: dict[str, str] = {}
    last = ""
    for block in re.findall(r"```text\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            if line.startswith(" ") and last:
                values[last] += line.strip()
            elif ": " in line:
                last, value = line.split(": ", 1)
                values[last] = value.strip()
    return values


# ================================================================================================
# The tests
# ================================================================================================
def test_the_doc_states_the_constants_this_implementation_uses() -> None:
    text = doc_text()
    for literal in (f'"{KB_CONTEXT}"', f"`{PREFIX}`", "`-65537`", f'"{BUNDLE_TYPE}"',
                    f'"{ROOT_TYPE}"', "0x00", "0x01", "tag 18", "tag 61", "disclosure_order",
                    "RFC 9162", "8192", "first 16 bytes"):
        assert literal in text, literal
    claims = {row[0]: int(row[1]) for row in doc_table("### 5.1 Claim keys")}
    assert claims == {**CLAIM_KEYS, "private": PRIVATE}
    groups = {row[0]: (int(row[1]), int(row[2])) for row in doc_table("### 6.1 Groups")}
    assert groups == GROUPS
    kb = {row[0]: int(row[1]) for row in doc_table("### 8.3 The key-binding proof")}
    assert kb == {"aud": AUD, "iat": IAT, "cnonce": CNONCE}


def test_the_doc_matches_the_schema_it_describes() -> None:
    """The groups and services the document lists are the schema's (read as plain JSON)."""
    schema = json.loads((DOC.parents[1] / "schemas" / "claims.json").read_text("utf-8"))
    assert {g["name"]: (g["key"], i) for i, g in enumerate(schema["groups"])} == GROUPS
    assert {n: tuple(s["discloses"]) for n, s in schema["services"].items()} == SERVICES


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_a_presentation_built_from_the_doc_is_accepted(service: str) -> None:
    """(1) The project's office issues; a wallet written from the document presents; the
    project's counter accepts."""
    city = City()
    holder = nacl.signing.SigningKey.generate()
    issued = read(city.issue_text(public(holder), example_claims()))  # the wallet's file
    assert issued.kb is None and len(issued.disclosures) == N_GROUPS
    code = pack(present(issued.cose, issued.disclosures, SERVICES[service], holder=holder,
                        aud=service, iat=NOW))
    result = city.verifier().verify(code, service=service, now=NOW + 30)
    assert result.accepted, result
    assert {c["group"] for c in result.claims} == set(SERVICES[service])


def test_one_group_or_all_of_them_from_the_doc() -> None:
    city = City()
    holder = nacl.signing.SigningKey.generate()
    issued = read(city.issue_text(public(holder), example_claims()))
    counter = city.verifier()
    for groups in (list(GROUPS), ["residence", "library"], ["preferred_language", "library",
                                                           "residence"]):
        code = pack(present(issued.cose, issued.disclosures, groups, holder=holder,
                            aud="library", iat=NOW))
        assert counter.verify(code, service="library", now=NOW).accepted, groups
    lone = pack(present(issued.cose, issued.disclosures, ["names"], holder=holder, aud="library",
                        iat=NOW))
    assert counter.verify(lone, service="library", now=NOW).code == "claims_missing"


def test_a_counter_id_and_a_nonce_from_the_doc() -> None:
    city = City()
    holder = nacl.signing.SigningKey.generate()
    issued = read(city.issue_text(public(holder), example_claims()))
    counter = city.verifier()
    desk = Policy.for_service("library", counter_id="Mesa 3")
    code = pack(present(issued.cose, issued.disclosures, SERVICES["library"], holder=holder,
                        aud="library:mesa 3", iat=NOW, nonce=b"8F3K"))
    assert counter.verify(code, service=desk, now=NOW, nonce=b"8F3K").accepted
    assert counter.verify(code, service=desk, now=NOW, nonce=b"9X2Q").code == "nonce_mismatch"
    other = Policy.for_service("library", counter_id="desk-4")
    assert counter.verify(code, service=other, now=NOW).code == "wrong_audience"
    assert counter.verify(code, service="transit", now=NOW).code == "wrong_audience"
    # an aud with no counter id is taken by every counter of its service
    bare = pack(present(issued.cose, issued.disclosures, SERVICES["library"], holder=holder,
                        aud="library", iat=NOW))
    assert counter.verify(bare, service=other, now=NOW).accepted


def test_everything_built_from_the_doc_is_accepted() -> None:
    """A whole city from the document: root file, bundle, office key, credential, presentation
    and paper; the project's counter takes them all and names what the catalogs name."""
    city = doc_city()
    holder = nacl.signing.SigningKey.generate()
    counter = city.counter()
    cred = city.issue(public(holder))
    code = pack(present(cred.cose, cred.disclosures, SERVICES["clinic"], holder=holder,
                        aud="clinic", iat=NOW + 10))
    result = counter.verify(code, service="clinic", now=NOW + 20)
    assert result.accepted, result
    shown = {c["claim"]: c["value"] for c in result.claims}
    assert shown["city"] == "Mexicali" and shown["network"] == CATALOGS["clinic"][1]
    assert shown["birth_date"] == "1987-03-14" and shown["given_name"] == "María Guadalupe"
    assert result.issuer is not None and result.issuer["office"] == "Oficina Municipal Centro"
    assert not result.warnings

    paper = city.issue(None, index=2)
    result = counter.verify(pack(paper.envelope()), service="library", now=NOW)
    assert result.accepted and result.paper, result
    assert {c["group"] for c in result.claims} == {"residence", "library"}
    assert {c["claim"]: c["value"] for c in result.claims}["system"] == CATALOGS["library"][1]


@pytest.mark.parametrize(("purpose", "code"), [("revocation", "revoked"),
                                               ("suspension", "suspended")])
def test_status_bits_as_the_doc_orders_them(purpose: str, code: str) -> None:
    """Bit i is byte i // 8, mask 0x80 >> (i % 8): index 9 is 0x40 of the second byte."""
    city = doc_city()
    if purpose == "revocation":
        city.revoked = (9,)
    else:
        city.suspended = (9,)
    counter = city.counter()
    holder = nacl.signing.SigningKey.generate()
    for index, expected in ((9, code), (8, "accepted"), (10, "accepted")):
        cred = city.issue(public(holder), index=index)
        presented = pack(present(cred.cose, cred.disclosures, SERVICES["library"],
                                 holder=holder, aud="library", iat=NOW))
        assert counter.verify(presented, service="library", now=NOW).code == expected, index
    assert zlib.decompress(status_list(16, [9])) == b"\x00\x40"


def test_a_project_presentation_verifies_with_the_doc() -> None:
    """(2) The project's office, wallet, root file and bundle, checked by the document's code:
    office signature, disclosure root from the disclosures and the proof, holder signature over
    the external AAD, audience, freshness, status."""
    city = City()
    holder = nacl.signing.SigningKey.generate()
    cred = city.issue(holder=holder)
    bundle = read_bundle(city.bundle(), city.root.to_json())
    assert bundle.catalogs["city"] == {1: "Mexicali"}
    for service, proof_len in (("library", 2), ("transit", 3), ("clinic", 3)):
        text = presentation(cred, holder, service, list(SERVICES[service]), now=NOW)
        env = verify_with_doc(text, bundle, service=service, now=NOW + 5)
        assert env.proof is not None and len(env.proof) == proof_len
        assert env.indices() == sorted(GROUPS[g][1] for g in SERVICES[service])
        assert env.kb is not None and cbor2.loads(env.kb[2]) == {AUD: service, IAT: NOW}
        residence = next(item[2] for item in env.items if item[1] == 1)
        assert residence[1] == "MX" and bundle.catalogs["city"][residence[0]] == "Mexicali"
        assert env.claims[CTI] == cred.cti
    # a wrong AAD (the leaves in another order) is not what the wallet signed
    env = read(presentation(cred, holder, "library", ["residence", "library"], now=NOW))
    holder_key = env.claims[CNF][1][-2]
    leaves = [leaf_digest(d) for d in env.disclosures]
    digest = credential_digest(env.cose)
    assert env.kb is not None and verify1(env.kb, holder_key, kb_aad(digest, leaves))
    assert not verify1(env.kb, holder_key, kb_aad(digest, leaves[::-1]))
    assert not verify1(env.kb, holder_key, kb_aad(hashlib.sha256(cbor2.dumps(
        env.cose)).digest(), leaves))  # the digest leaves the unprotected header out


def test_a_project_paper_credential_and_status_with_the_doc() -> None:
    city = City()
    paper = city.issue()
    text = pack(paper.to_cbor())
    env = verify_with_doc(text, read_bundle(city.bundle(), city.root.to_json()), service=None,
                          now=NOW)
    assert env.kb is None and CNF not in env.claims
    assert [item[1] for item in env.items] == [1, 2, 3, 4, 5, 6, 7]
    # the project's office marks it revoked; the document's reading of the bundle agrees
    index = env.claims[PRIVATE][1]
    city.revocation.set(index)
    bundle = read_bundle(city.bundle(), city.root.to_json())
    assert bundle.marked(1, "revocation", index) and not bundle.marked(1, "suspension", index)
    assert city.verifier().verify(text, service="library", now=NOW).code == "revoked"


def test_the_transport_rules_of_the_doc() -> None:
    city = doc_city()
    holder = nacl.signing.SigningKey.generate()
    counter = city.counter()
    cred = city.issue(public(holder))
    body = present(cred.cose, cred.disclosures, SERVICES["library"], holder=holder,
                   aud="library", iat=NOW)
    plain, squeezed = pack(body, compress=False), pack(body, compress=True)
    # zlib only when strictly shorter (a presentation nearly never is)
    assert pack(body) == (squeezed if len(zlib.compress(body, 9)) < len(body) else plain)
    assert b45decode(plain[4:]) == body
    for text in (plain, squeezed, plain.lower(), f"\r\n {plain}\r\n", "pu1:" + plain[4:]):
        assert counter.verify(text, service="library", now=NOW).accepted, text[:8]
    assert unpack(squeezed) == body  # a compressed one reads the same
    assert counter.verify("PU2:" + plain[4:], service="library",
                          now=NOW).code == "unsupported_version"
    assert counter.verify(PREFIX + b45encode(zlib.compress(bytes(9000))), service="library",
                          now=NOW).code == "too_large"


def _mutated(change: Callable[[list[Any]], Any]) -> str:
    """A library presentation from the document's city (``CONFORMING``), with ``change``
    applied to its array (or replacing its CBOR, if ``change`` returns bytes)."""
    cred = CONFORMING.issue(public(HOLDER))
    parts = present_parts(cred.cose, cred.disclosures, [0, 1], holder=HOLDER, aud="library",
                          iat=NOW)
    result = change(parts)
    return pack(result if isinstance(result, bytes) else cbor2.dumps(parts))


def _kb_claims(claims: dict[int, Any], *, duplicate: bool = False
               ) -> Callable[[list[Any]], None]:
    """Sign the key binding again over ``claims`` (with ``aud`` twice, if asked)."""
    def change(parts: list[Any]) -> None:
        payload = cbor2.dumps(claims)
        if duplicate:  # one more pair in the map's head, and aud again at its end
            payload = (bytes([payload[0] + 1]) + payload[1:] + cbor2.dumps(AUD)
                       + cbor2.dumps("transit"))
        leaves = [leaf_digest(d) for d in parts[1]]
        parts[3] = sign1(HOLDER, payload, aad=kb_aad(credential_digest(parts[0]), leaves))
    return change


def _aad_reversed(parts: list[Any]) -> None:
    leaves = [leaf_digest(d) for d in parts[1]][::-1]
    parts[3] = sign1(HOLDER, parts[3][2], aad=kb_aad(credential_digest(parts[0]), leaves))


def _indefinite(parts: list[Any]) -> bytes:
    return b"\x9f" + cbor2.dumps(parts)[1:] + b"\xff"  # array(4) made array(*) … break


def _duplicate_header_key(parts: list[Any]) -> bytes:
    marker = b"marker: replaced"
    parts[0][1] = {99: marker}
    once = cbor2.dumps({99: marker})
    twice = b"\xa2" + once[1:] + once[1:]
    return cbor2.dumps(parts).replace(once, twice)


def _unprotected_header(parts: list[Any]) -> None:
    """A header added after signing, unprotected: it is in neither signature nor digest."""
    parts[0][1] = {99: b"ignored"}


def _tagged(*tags: int) -> Callable[[list[Any]], None]:
    def change(parts: list[Any]) -> None:
        for i in (0, 3):
            obj: Any = parts[i]
            for tag in reversed(tags):
                obj = cbor2.CBORTag(tag, obj)
            parts[i] = obj
    return change


def _drop_proof_hash(parts: list[Any]) -> None:
    parts[2] = parts[2][:-1]


def _short_salt(parts: list[Any]) -> None:
    item = cbor2.loads(parts[1][0])
    parts[1][0] = cbor2.dumps([item[0][:15], item[1], item[2]])


def _changed_value(parts: list[Any]) -> None:
    item = cbor2.loads(parts[1][0])
    parts[1][0] = cbor2.dumps([item[0], item[1], [2, "MX", 16587]])


def _repeated_group(parts: list[Any]) -> None:
    parts[1] = [parts[1][0], parts[1][0]]


def _no_kb(parts: list[Any]) -> bytes:
    return cbor2.dumps(parts[:2])


CONFORMANCE: list[tuple[str, Callable[[list[Any]], Any], str]] = [
    ("as built", lambda parts: None, "accepted"),
    ("unprotected header ignored", _unprotected_header, "accepted"),
    ("tag 18", _tagged(TAG_SIGN1), "accepted"),
    ("another tag", _tagged(TAG_CWT + 1, TAG_SIGN1), "cbor_invalid"),
    ("indefinite length", _indefinite, "cbor_invalid"),
    ("repeated header key", _duplicate_header_key, "cbor_invalid"),
    ("repeated claim", _kb_claims({AUD: "library", IAT: NOW}, duplicate=True), "shape_invalid"),
    ("iat not whole", _kb_claims({AUD: "library", IAT: NOW + 0.5}), "shape_invalid"),
    ("salt of 15 bytes", _short_salt, "shape_invalid"),
    ("group twice", _repeated_group, "disclosure_duplicate"),
    ("proof hash missing", _drop_proof_hash, "disclosure_mismatch"),
    ("value changed", _changed_value, "disclosure_mismatch"),
    ("wallet file shown", _no_kb, "disclosures_incomplete"),
    ("aad in another order", _aad_reversed, "holder_signature_invalid"),
    ("aud of another service", _kb_claims({AUD: "transit", IAT: NOW}), "wrong_audience"),
    ("from the future", _kb_claims({AUD: "library", IAT: NOW + 301}), "presentation_future"),
    ("stale", _kb_claims({AUD: "library", IAT: NOW - 121}), "presentation_stale"),
]


@pytest.mark.parametrize(("change", "code"), [c[1:] for c in CONFORMANCE],
                         ids=[c[0] for c in CONFORMANCE])
def test_conformance(change: Callable[[list[Any]], Any], code: str) -> None:
    """§12, case by case: what the document says a counter refuses, and with which code."""
    assert CONFORMING.counter().verify(_mutated(change), service="library",
                                       now=NOW).code == code


def test_tag_61_over_tag_18_is_accepted() -> None:
    """RFC 8392 §6: a CWT may carry tag 61 in front of its COSE tag; 61 alone is no COSE."""
    counter = CONFORMING.counter()
    assert counter.verify(_mutated(_tagged(TAG_CWT, TAG_SIGN1)), service="library",
                          now=NOW).accepted
    assert counter.verify(_mutated(_tagged(TAG_CWT)), service="library",
                          now=NOW).code == "cose_invalid"


def test_disclosures_in_descending_order_are_refused() -> None:
    """§8.1: ascending group order only. Signed as shown (the AAD in that order, the proof
    right), so only the order is wrong."""
    cred = CONFORMING.issue(public(HOLDER))
    parts = present_parts(cred.cose, cred.disclosures, [1, 0], holder=HOLDER, aud="library",
                          iat=NOW)
    result = CONFORMING.counter().verify(pack(cbor2.dumps(parts)), service="library", now=NOW)
    assert result.code == "disclosure_order"


# -- the worked example of §13 ---------------------------------------------------------------
HOLDER = nacl.signing.SigningKey(bytes([0x33]) * 32)
EXAMPLE_IAT = 1795446000  # 2026-11-23T15:00:00Z
EXAMPLE = DocCity(nacl.signing.SigningKey(bytes([0x11]) * 32),
                  nacl.signing.SigningKey(bytes([0x22]) * 32), EXAMPLE_IAT)
# The same keys in the tests' calendar, for the conformance cases.
CONFORMING = DocCity(EXAMPLE.root, EXAMPLE.office, NOW)
# Salts must be random; the example's are fixed (and look random, so they do not compress).
EXAMPLE_SALTS = {k: hashlib.sha256(bytes([k])).digest()[:SALT_LEN] for k in range(1, 8)}
EXAMPLE_CTI = bytes(range(1, 9))


def worked_example() -> dict[str, str]:
    """Every value §13 lists, built here from the inputs it states."""
    cred = EXAMPLE.issue(public(HOLDER), salts=EXAMPLE_SALTS, cti=EXAMPLE_CTI)
    leaves = [leaf_digest(d) for d in cred.disclosures]
    body = present(cred.cose, cred.disclosures, SERVICES["library"], holder=HOLDER,
                   aud="library", iat=EXAMPLE_IAT + 60)
    parts = cbor2.loads(body)
    paper = EXAMPLE.issue(None, salts=EXAMPLE_SALTS, cti=EXAMPLE_CTI).envelope()
    wallet_file = cred.envelope()
    text = pack(body)
    out = {
        "root public key": public(EXAMPLE.root).hex(),
        "office public key": public(EXAMPLE.office).hex(),
        "office kid": kid_of(public(EXAMPLE.office)).hex(),
        "holder public key": public(HOLDER).hex(),
        "credential id": base64.b32encode(EXAMPLE_CTI).decode().rstrip("="),
        "protected": cred.cose[0].hex(),
        "payload": cred.cose[2].hex(),
        "signature": cred.cose[3].hex(),
    }
    for i, d in enumerate(cred.disclosures):
        out[f"disclosure {i}"] = d.hex()
    for i, leaf in enumerate(leaves):
        out[f"leaf {i}"] = leaf.hex()
    out |= {
        "node 0-1": node(leaves[0], leaves[1]).hex(),
        "node 2-3": node(leaves[2], leaves[3]).hex(),
        "node 4-5": node(leaves[4], leaves[5]).hex(),
        "node 4-6": node(node(leaves[4], leaves[5]), leaves[6]).hex(),
        "root": tree_root(leaves).hex(),
        "proof 0": parts[2][0].hex(),
        "proof 1": parts[2][1].hex(),
        "credential digest": credential_digest(cred.cose).hex(),
        "kb protected": parts[3][0].hex(),
        "kb payload": parts[3][2].hex(),
        "kb aad": kb_aad(credential_digest(cred.cose), leaves[:2]).hex(),
        "kb signature": parts[3][3].hex(),
        "presentation": body.hex(),
        "presentation bytes": str(len(body)),
        "QR text": text,
        "QR characters": str(len(text)),
        "wallet file bytes": str(len(wallet_file)),
        "wallet file QR characters": str(len(pack(wallet_file))),
        "paper bytes": str(len(paper)),
        "paper QR characters": str(len(pack(paper))),
    }
    for service in ("transit", "clinic"):
        other = present(cred.cose, cred.disclosures, SERVICES[service], holder=HOLDER,
                        aud=service, iat=EXAMPLE_IAT + 60)
        out[f"{service} bytes"] = str(len(other))
        out[f"{service} QR characters"] = str(len(pack(other)))
    return out


def test_the_doc_worked_example_is_rebuilt_and_accepted() -> None:
    """§13 byte for byte from its stated inputs, and the project's counter accepts it."""
    stated = doc_vector()
    for name, value in worked_example().items():
        assert stated.get(name) == value, name
    result = EXAMPLE.counter().verify(stated["QR text"], service="library",
                                      now=int(stated["counter time"]))
    assert result.accepted, result
    assert result.credential_id == stated["credential id"]
    assert read(stated["QR text"]).claims[CTI] == EXAMPLE_CTI
