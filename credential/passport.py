"""The passport format: issuing a credential, presenting it, and decoding either from CBOR.

Wire forms (CBOR arrays; the QR envelope in ``transport`` adds zlib/base45 and the prefix):

- credential (wallet file, and the *paper* credential when it has no holder key)::

      [COSE_Sign1, [disclosure bstr, ...all groups...]]

- presentation (what a phone shows)::

      [COSE_Sign1, [disclosure bstr, ...chosen groups...], [subtree hash, ...], KB COSE_Sign1]

The credential's COSE payload is a CWT claims set (RFC 8392): iss (1), exp (4), nbf (5), iat (6),
cti (7), cnf (8, RFC 8747: ``{1: COSE_Key}``), plus the status reference ``[list id, index]``
and the 128-bit root of the disclosure Merkle tree (see ``sd``), carried together in one
private-use claim ``[list id, index, root]`` because each private-use key costs five bytes in
the QR. (docs/format.md says all of it byte by byte, for other implementations.)

The key-binding (KB) proof is a COSE_Sign1 by the ``cnf`` key whose payload is CWT claims
aud (3), iat (6) and optionally cnonce (39); its ``external_aad`` binds it to this credential and
exactly these disclosures without sending those hashes again.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote

import cbor2
import nacl.signing

from credential import cbor, cose, sd, transport
from credential.claims import CatalogCoder, Claims, decode_group, encode_group, invalid_claim
from credential.errors import MalformedInput, UsageError
from credential.ids import CTI_LEN, credential_id
from credential.records import record_repr
from credential.text import check_utf8, escaped, folded
from credential.times import day_bounds
from schemas import schema

__all__ = [
    "STATUS_BOUND",
    "CredentialPayload",
    "Decoded",
    "IssuedCredential",
    "StatusRef",
    "audience",
    "audience_matches",
    "audience_parts",
    "credential_digest",
    "credential_id",
    "decode_bytes",
    "decode_envelope",
    "decode_text",
    "issue",
    "kb_aad",
    "parse_nonce",
    "present",
]

# CWT claim keys (RFC 8392 §9.1 registry) and one private-use key (< -65536).
ISS, AUD, EXP, NBF, IAT, CTI, CNF, CNONCE = 1, 3, 4, 5, 6, 7, 8, 39
PU = -65537  # [status list id, status index, disclosure root]
# COSE_Key (RFC 9052 §7, RFC 9053 §7.2): kty OKP (1), crv Ed25519 (6), x.
COSE_KEY = 1
KTY, KTY_OKP, CRV, CRV_ED25519, X = 1, 1, -1, 6, -2

# A time whose day (rounded to the nearest, ``times.first_day``) is past 9999-12-31 is none a
# calendar shows (Python's ``date`` stops there): a signed one passed every check and raised
# on the way to "not valid until …". Up to 9999-12-31T12:00Z, exclusive.
_MAX_TIME = 253402257600
STATUS_BOUND = 2**32  # a status list number and an index are below it
KB_CONTEXT = "PU1 key binding"
# The largest disclosure a verifier reads. The schema's longest group (two names of 100
# characters, each up to 4 UTF-8 bytes) encodes to about 830 bytes; ``issue`` refuses anything
# over, so the issuer never signs what no counter would accept.
MAX_DISCLOSURE = 1024


# Values decoded on every scan are plain slotted classes, not NamedTuples or frozen dataclasses:
# compiled (make compile) they become C structs, built about ten times faster than a NamedTuple
# and twenty times faster than a frozen dataclass, with attribute reads that are plain loads.
# Nothing assigns to them after construction.
class StatusRef:
    __slots__ = ("idx", "list_id")

    list_id: int
    idx: int  # "idx" as in the IETF status list drafts (``index`` is a tuple method)

    def __init__(self, list_id: int, idx: int) -> None:
        self.list_id = list_id
        self.idx = idx

    def __repr__(self) -> str:
        return record_repr(self)


class CredentialPayload:
    """The signed CWT claims of a credential, shape-checked."""

    __slots__ = ("cti", "exp", "holder_key", "iat", "iss", "nbf", "sd_root", "status")

    iss: str
    iat: int
    nbf: int
    exp: int
    cti: bytes
    holder_key: bytes | None
    status: StatusRef
    sd_root: bytes

    def __init__(self, iss: str, iat: int, nbf: int, exp: int, cti: bytes,
                 holder_key: bytes | None, status: StatusRef, sd_root: bytes) -> None:
        self.iss, self.iat, self.nbf, self.exp, self.cti = iss, iat, nbf, exp, cti
        self.holder_key, self.status, self.sd_root = holder_key, status, sd_root

    def __repr__(self) -> str:
        return record_repr(self)

    @property
    def credential_id(self) -> str:
        return credential_id(self.cti)


@dataclass(frozen=True)
class IssuedCredential:
    cose: list[Any]
    disclosures: tuple[bytes, ...]
    cti: bytes

    @property
    def credential_id(self) -> str:
        return credential_id(self.cti)

    def to_cbor(self) -> bytes:
        return cbor2.dumps([self.cose, list(self.disclosures)])


def issue(claims: Claims, *, key: nacl.signing.SigningKey, kid: bytes, iss: str,
          holder_key: bytes | None, status: StatusRef, issued_at: int,
          catalog: CatalogCoder | None = None, cti: bytes | None = None,
          timezone: str | None = None) -> IssuedCredential:
    """Sign a credential. ``holder_key`` None makes a paper credential (no key binding);
    ``timezone`` (IANA) is the office's, in which its validity days are counted (UTC if None)."""
    nbf, exp = day_bounds(claims.valid_from, claims.valid_until, timezone)
    cti = cti or os.urandom(CTI_LEN)
    disclosures = tuple(
        cbor2.dumps([os.urandom(sd.SALT_LEN), g.key,
                     encode_group(g, claims.groups[g.name], catalog)])
        for g in schema().groups)
    for g, d in zip(schema().groups, disclosures, strict=True):
        if len(d) > MAX_DISCLOSURE:
            raise invalid_claim(g.name, f"más de {MAX_DISCLOSURE} bytes en total",
                                f"more than {MAX_DISCLOSURE} bytes in all")
    payload: dict[int, Any] = {
        ISS: iss,
        IAT: issued_at,
        NBF: nbf,
        EXP: exp,
        CTI: cti,
        PU: [status.list_id, status.idx, sd.root([sd.leaf_digest(d) for d in disclosures])],
    }
    if holder_key is not None:
        if len(holder_key) != 32:
            raise MalformedInput("key_invalid", reason="holder key must be 32 bytes")
        payload[CNF] = {COSE_KEY: {KTY: KTY_OKP, CRV: CRV_ED25519, X: holder_key}}
    signed = cose.sign1(key, cbor.dumps(payload), kid=kid)
    return IssuedCredential(signed, disclosures, cti)


def credential_digest(c: cose.Sign1) -> bytes:
    """SHA-256 of the CBOR array ``[protected, payload, signature]`` (encoded by hand: hot path)."""
    return hashlib.sha256(b"".join((
        b"\x83", cose.bstr_head(len(c.protected)), c.protected,
        cose.bstr_head(len(c.payload)), c.payload,
        cose.bstr_head(len(c.signature)), c.signature))).digest()


_KB_HEAD = cbor2.dumps(KB_CONTEXT)


def kb_aad(cred_digest: bytes, disclosed: Sequence[bytes]) -> bytes:
    """What the holder's key-binding signature commits to besides aud/iat/cnonce: the CBOR array
    ``[KB_CONTEXT, credential digest, [disclosed leaf digests]]``."""
    parts = [b"\x83", _KB_HEAD, cose.bstr_head(len(cred_digest)), cred_digest,
             cbor.head(4, len(disclosed))]
    for d in disclosed:
        parts.append(cose.bstr_head(len(d)))
        parts.append(d)
    return b"".join(parts)


MAX_NONCE = 64  # what ``decode_envelope`` accepts in a key-binding proof


def parse_nonce(text: str | None) -> bytes | None:
    """A counter's challenge as the wallet signs it and the counter checks it: ``hex:…`` for
    raw bytes, else text, in capitals — the resident types what the counter's screen shows,
    and "8f3k" typed for "8F3K" is the same answer."""
    if text is None:
        return None
    # typed on a Latin-1 terminal ("señal"): said so, not an internal error in ``encode``
    check_utf8(text, "--nonce")
    if text[:4].lower() == "hex:":
        try:
            raw = bytes.fromhex(text[4:])
        except ValueError:
            raise UsageError("nonce_invalid", max=MAX_NONCE) from None
    else:
        # one spelling of "ñ" (a keyboard composes it, a script may not) and no blanks at the
        # ends, on both sides: wallet and counter run this same function
        raw = unicodedata.normalize("NFC", text.strip()).upper().encode("utf-8")
    # An empty nonce would be silently dropped from the proof: refuse it rather than mislead.
    if not 0 < len(raw) <= MAX_NONCE:
        raise UsageError("nonce_invalid", max=MAX_NONCE)
    return raw


MAX_AUDIENCE = 64  # characters of a key binding's ``aud``: a service and a counter's id


def check_audience(service: str, counter: str | None, code: str) -> str:
    """``audience(service, counter)``, refused as ``code`` (with ``audience`` and ``max``) when
    no wallet signs it: a counter id empty or blank, an ``aud`` too long or not printable. The
    wallet and the counter hold an id to the same rule: a counter set to an empty id checked
    none, and took a code made for any other counter."""
    signed = audience(service, counter)
    if counter is not None and not counter.strip():
        raise UsageError(code, audience=signed, max=MAX_AUDIENCE)
    if len(signed) > MAX_AUDIENCE or not signed.isprintable():
        # echoed escaped: a control character typed or pasted must not act on the terminal
        raise UsageError(code, audience=escaped(signed[:80]), max=MAX_AUDIENCE)
    return signed


def audience(service: str, counter: str | None = None) -> str:
    """A key binding's ``aud``: ``SERVICE``, or ``SERVICE:COUNTER`` with the id as typed.

    RFC 8392 takes RFC 7519's StringOrURI, in which a value holding a colon must be a URI: an id
    of URI characters (``desk-3``) makes one, an id with a space or an accent (``mesa 3``) does
    not. Written percent-encoded it would, but counters of every release before compare the id
    as typed and would refuse it, and the 64 characters a counter takes would hold a third as
    many accented letters; so it is written as typed, and read either way
    (``audience_matches``): another city's wallet that encodes it is understood."""
    return service if counter is None else f"{service}:{counter}"


def audience_parts(aud: str) -> tuple[str, str]:
    """The service and the counter id as signed (``""`` if none) of an ``aud``."""
    service, _, counter = aud.partition(":")
    return service, counter


def audience_matches(signed: str, counter: str) -> bool:
    """Whether the counter id ``signed`` in a code names the counter ``counter``: as typed, or
    percent-encoded (RFC 3986, a StringOrURI-strict wallet's); compared as people's typed names
    are (``folded``: case, accents, Unicode's two spellings of "í", blanks at the ends, and
    inner runs of blanks as one), since one clerk types "Clínica Norte" where another wrote
    "clinica norte" in the counter's setup."""
    wanted = _id_form(counter)
    return _id_form(signed) == wanted or (
        "%" in signed and _id_form(unquote(signed, errors="replace")) == wanted)


def _id_form(name: str) -> str:
    return " ".join(folded(name).split())


def present(credential: list[Any], disclosures: Sequence[bytes], *, groups: Iterable[str],
            holder: nacl.signing.SigningKey, audience: str, now: int,
            nonce: bytes | None = None) -> bytes:
    """Build a presentation (CBOR bytes) disclosing only ``groups``."""
    c = cose.parse_sign1(credential)
    index_of = {g.name: g.index for g in schema().groups}
    chosen = sorted({index_of[name] for name in groups})
    leaves = [sd.leaf_digest(d) for d in disclosures]
    shown = [disclosures[i] for i in chosen]
    proof = sd.multiproof(leaves, set(chosen))
    claims: dict[int, Any] = {AUD: audience, IAT: now}
    if nonce:
        claims[CNONCE] = nonce
    aad = kb_aad(credential_digest(c), [leaves[i] for i in chosen])
    kb = cose.sign1(holder, cbor.dumps(claims), external_aad=aad)
    return cbor2.dumps([c.to_list(), shown, proof, kb])


class KeyBinding:
    __slots__ = ("audience", "iat", "nonce", "sign1")

    sign1: cose.Sign1
    audience: str
    iat: int
    nonce: bytes | None

    def __init__(self, sign1: cose.Sign1, audience: str, iat: int, nonce: bytes | None) -> None:
        self.sign1 = sign1
        self.audience = audience
        self.iat = iat
        self.nonce = nonce

    def __repr__(self) -> str:
        return record_repr(self)


class Decoded:
    """A shape-checked envelope: credential, disclosures (raw bytes and decoded), and for a
    presentation the subtree hashes and the key-binding proof."""

    __slots__ = ("credential", "disclosures", "group_index", "groups", "kb", "payload", "proof")

    credential: cose.Sign1
    payload: CredentialPayload
    disclosures: tuple[bytes, ...]
    groups: Mapping[str, dict[str, Any]]
    group_index: tuple[int, ...]  # leaf index of each disclosure, in order
    proof: tuple[bytes, ...] | None
    kb: KeyBinding | None

    def __init__(self, credential: cose.Sign1, payload: CredentialPayload,
                 disclosures: tuple[bytes, ...], groups: Mapping[str, dict[str, Any]],
                 group_index: tuple[int, ...], proof: tuple[bytes, ...] | None,
                 kb: KeyBinding | None) -> None:
        self.credential, self.payload, self.disclosures = credential, payload, disclosures
        self.groups, self.group_index, self.proof, self.kb = groups, group_index, proof, kb

    def __repr__(self) -> str:
        return record_repr(self)

    @property
    def is_presentation(self) -> bool:
        return self.kb is not None

    def in_leaf_order(self) -> list[bytes]:
        """The disclosures at their Merkle leaf index (``b""`` where a group is not shown):
        how ``present`` addresses them."""
        ordered = [b""] * len(schema().groups)
        for i, disclosure in zip(self.group_index, self.disclosures, strict=True):
            ordered[i] = disclosure
        return ordered

    def computed_root(self, leaves: Sequence[bytes]) -> bytes | None:
        """The disclosure root that ``leaves`` (the disclosures' digests, in order) and, for a
        presentation, the proof recompute; ``None`` if they cannot (a credential missing a
        group, a proof of the wrong shape). Compare it with ``payload.sd_root``."""
        n = len(schema().groups)
        known = dict(zip(self.group_index, leaves, strict=True))
        if self.proof is None:  # a whole credential carries every leaf and no proof
            return sd.root([known[i] for i in range(n)]) if len(known) == n else None
        return sd.root_from_multiproof(n, known, self.proof)


def _claims_map(payload: bytes, what: str) -> dict[Any, Any]:
    """A signed CWT claims map. Its bytes are inside an already size-bounded envelope."""
    try:
        p = cbor.loads(payload)  # refuses duplicate keys, like every cbor.loads
    except MalformedInput:
        raise MalformedInput("shape_invalid", what=what) from None
    if not isinstance(p, dict):
        raise MalformedInput("shape_invalid", what=what)
    return p


def _payload(c: cose.Sign1) -> CredentialPayload:
    p = _claims_map(c.payload, "payload")
    iss, iat, nbf, exp, cti = p.get(ISS), p.get(IAT), p.get(NBF), p.get(EXP), p.get(CTI)
    pu = p.get(PU)
    if not (isinstance(pu, list) and len(pu) == 3):
        raise MalformedInput("shape_invalid", what="payload")
    status, root = pu[:2], pu[2]
    if not (isinstance(iss, str) and 0 < len(iss) <= 64
            and type(iat) is int and type(nbf) is int and type(exp) is int
            and 0 <= iat < _MAX_TIME and 0 <= nbf < _MAX_TIME and 0 <= exp < _MAX_TIME
            and isinstance(cti, bytes) and 0 < len(cti) <= 32
            and isinstance(root, bytes) and len(root) == sd.DIGEST_LEN
            and type(status[0]) is int and type(status[1]) is int
            and 0 <= status[0] < STATUS_BOUND and 0 <= status[1] < STATUS_BOUND):
        raise MalformedInput("shape_invalid", what=_times_what(p, (IAT, NBF, EXP), "payload"))
    holder: bytes | None = None
    if CNF in p:
        cnf = p[CNF]
        key = cnf.get(COSE_KEY) if isinstance(cnf, dict) else None
        if not (isinstance(key, dict) and type(key.get(KTY)) is int and key[KTY] == KTY_OKP
                and type(key.get(CRV)) is int and key[CRV] == CRV_ED25519
                and isinstance(key.get(X), bytes)
                and len(key[X]) == 32):
            raise MalformedInput("shape_invalid", what="cnf")
        holder = key[X]
    return CredentialPayload(iss, iat, nbf, exp, cti, holder,
                             StatusRef(status[0], status[1]), root)


def _kb(obj: Any) -> KeyBinding:
    s = cose.parse_sign1(obj)
    p = _claims_map(s.payload, "kb")
    aud, iat, nonce = p.get(AUD), p.get(IAT), p.get(CNONCE)
    if not (isinstance(aud, str) and 0 < len(aud) <= 64 and type(iat) is int
            and 0 <= iat < _MAX_TIME and (nonce is None or (isinstance(nonce, bytes)
                                                          and len(nonce) <= 64))):
        raise MalformedInput("shape_invalid", what=_times_what(p, (IAT,), "kb"))
    return KeyBinding(s, aud, iat, nonce)


def _times_what(claims: dict[Any, Any], keys: tuple[int, ...], what: str) -> str:
    """The part of a refused claims map to name: its times when one is not a whole number of
    seconds (RFC 8392 allows a fraction; this profile, for one encoding of each passport, does
    not), which another city's wallet writing ``iat`` as a float needs to hear."""
    if any(k in claims and type(claims[k]) is not int for k in keys):
        names = ", ".join({IAT: "iat", NBF: "nbf", EXP: "exp"}[k] for k in keys)
        return f"{what}: times ({names}) in whole seconds"
    return what


_SIGN1_TAG: Final = frozenset({cose.TAG_SIGN1, cose.TAG_CWT})


def decode_envelope(obj: Any) -> Decoded:
    """Shape-check a decoded CBOR envelope. Signatures and digests are checked by the caller."""
    if not isinstance(obj, list) or len(obj) not in (2, 4):
        raise MalformedInput("shape_invalid", what="envelope")
    credential = cose.parse_sign1(obj[0])
    payload = _payload(credential)
    raw = obj[1]
    spec = schema()
    if not isinstance(raw, list) or not 0 < len(raw) <= len(spec.groups):
        raise MalformedInput("shape_invalid", what="disclosures")
    groups: dict[str, dict[str, Any]] = {}
    indices: list[int] = []
    by_key = spec.groups_by_key
    for d in raw:
        if not isinstance(d, bytes) or len(d) > MAX_DISCLOSURE:
            raise MalformedInput("shape_invalid", what="disclosure")
        try:
            item = cbor.loads(d)
        except MalformedInput:
            raise MalformedInput("shape_invalid", what="disclosure") from None
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], bytes)
                and len(item[0]) == sd.SALT_LEN and type(item[1]) is int):
            raise MalformedInput("shape_invalid", what="disclosure")
        group = by_key.get(item[1])
        if group is None:
            raise MalformedInput("shape_invalid", what="disclosure key")
        if group.name in groups:
            raise MalformedInput("disclosure_duplicate", group=group.label["en"],
                                 group_es=group.label["es"])
        if indices and group.index < indices[-1]:
            # One order, the schema's (ascending group key), as a wallet lists them and signs
            # their digests: a code in another order is refused for what it is, not as a
            # holder signature that does not match.
            raise MalformedInput("disclosure_order")
        groups[group.name] = decode_group(group, item[2])
        indices.append(group.index)
    proof: tuple[bytes, ...] | None = None
    kb: KeyBinding | None = None
    if len(obj) == 4:
        if not (isinstance(obj[2], list) and len(obj[2]) <= len(spec.groups)
                and all(isinstance(h, bytes) and len(h) == sd.DIGEST_LEN for h in obj[2])):
            raise MalformedInput("shape_invalid", what="proof")
        proof = tuple(obj[2])
        kb = _kb(obj[3])
    return Decoded(credential, payload, tuple(raw), groups, tuple(indices), proof, kb)


def decode_bytes(data: object) -> Decoded:
    """An envelope's CBOR to a shape-checked envelope. Its COSE_Sign1s may come under tag 18
    (RFC 9052 §4.2 allows either, and COSE libraries tag by default); the tag is no part of what
    is signed, so another city's tagged code verifies as ours does."""
    return decode_envelope(cbor.loads(data, allowed_tags=_SIGN1_TAG))


def decode_text(text: object) -> Decoded:
    """Scanned or stored QR text (``PU1:…``) to a shape-checked envelope: every bound of
    ``transport`` and ``cbor`` applies. Signatures and digests are checked by the caller."""
    return decode_bytes(transport.unpack(text))
