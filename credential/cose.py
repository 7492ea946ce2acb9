"""COSE_Sign1 (RFC 9052 §4.2) with EdDSA/Ed25519 only — the one signature container we use for
credentials, key-binding proofs and trust bundles.

A message is the CBOR array ``[protected: bstr, unprotected: map, payload: bstr, signature: bstr]``,
optionally under tag 18; the signature covers the ``Sig_structure``
``["Signature1", protected, external_aad, payload]``. Any independent COSE library verifies what
this module signs (tested with pycose).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import cbor2
import nacl.signing

from credential import cbor, ed25519
from credential.errors import MalformedInput
from credential.records import record_repr

__all__ = ["ALG_EDDSA", "Sign1", "bstr_head", "parse_sign1", "sig_structure", "sign1"]

ALG_EDDSA = -8
# RFC 9864: the fully specified Ed25519 (-19) replaces the polymorphic EdDSA (-8). We write -8
# while common COSE libraries only know it, and read both.
ALG_ED25519 = -19
HDR_ALG = 1
HDR_CRIT = 2
HDR_KID = 4
TAG_SIGN1 = 18
TAG_CWT = 61


def bstr_head(n: int) -> bytes:
    """The CBOR head of a byte string of length ``n``."""
    return cbor.head(2, n)


_SIG1_PREFIX = b"\x84\x6aSignature1"  # array(4), text(10) "Signature1"


def sig_structure(protected: bytes, payload: bytes, external_aad: bytes = b"",
                  signature: bytes = b"") -> bytes:
    """``["Signature1", protected, external_aad, payload]`` encoded by hand: it is built twice
    per scan, and concatenation costs a fraction of a general encoder call. A ``signature``
    goes in front, in one copy: libsodium's "signed message" form that ``verify`` checks."""
    return b"".join((signature, _SIG1_PREFIX, bstr_head(len(protected)), protected,
                     bstr_head(len(external_aad)), external_aad,
                     bstr_head(len(payload)), payload))


def sign1(key: nacl.signing.SigningKey, payload: bytes, *, kid: bytes | None = None,
          external_aad: bytes = b"") -> list[Any]:
    """A COSE_Sign1 array (untagged: the QR envelope already says what it is)."""
    header: dict[int, Any] = {HDR_ALG: ALG_EDDSA}
    if kid is not None:
        header[HDR_KID] = kid
    protected = cbor.dumps(header)  # RFC 8949 §4.2.1 deterministic encoding
    signature = key.sign(sig_structure(protected, payload, external_aad)).signature
    return [protected, {}, payload, signature]


class Sign1:
    """A shape-checked COSE_Sign1 (a plain slotted class for speed: see credential.passport)."""

    __slots__ = ("kid", "payload", "protected", "signature")

    protected: bytes
    payload: bytes
    signature: bytes
    kid: bytes | None

    def __init__(self, protected: bytes, payload: bytes, signature: bytes,
                 kid: bytes | None) -> None:
        self.protected, self.payload, self.signature, self.kid = protected, payload, signature, kid

    def __repr__(self) -> str:
        return record_repr(self)

    def verify(self, public_key: bytes, external_aad: bytes = b"") -> bool:
        return ed25519.verify_signed(public_key, sig_structure(self.protected, self.payload,
                                                               external_aad, self.signature))

    def to_list(self) -> list[Any]:
        return [self.protected, {}, self.payload, self.signature]


@lru_cache(maxsize=4096)
def _protected_kid(protected: bytes) -> bytes | None:
    """The kid of a valid EdDSA protected header (raises for anything else). Cached because
    counters see the same few headers (one per office key) over and over; a failure raises and
    so is never cached."""
    try:
        header = cbor.loads(protected)
    except MalformedInput:
        raise MalformedInput("cose_invalid") from None
    alg = header.get(HDR_ALG) if isinstance(header, dict) else None
    if type(alg) is not int or alg not in (ALG_EDDSA, ALG_ED25519):
        raise MalformedInput("cose_invalid")
    if HDR_CRIT in header:
        # RFC 9052 §3.1: what crit lists must be understood, and we understand no extension
        raise MalformedInput("cose_invalid")
    kid: object = header.get(HDR_KID)  # object until checked (see parse_sign1)
    if kid is not None and not (isinstance(kid, bytes) and len(kid) <= 32):
        raise MalformedInput("cose_invalid")
    return kid if isinstance(kid, bytes) else None


def parse_sign1(obj: Any) -> Sign1:
    """Check the shape of a decoded COSE_Sign1 and that it declares EdDSA."""
    if isinstance(obj, cbor2.CBORTag) and obj.tag == TAG_CWT:
        # RFC 8392 §6: a CWT may come under tag 61, prefixed to the COSE message's own tag
        obj = obj.value
        if not isinstance(obj, cbor2.CBORTag):
            raise MalformedInput("cose_invalid")
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != TAG_SIGN1:
            raise MalformedInput("cose_invalid")
        obj = obj.value
    # cbor2 hands back tuples and frozendicts for containers under a tag.
    if not (isinstance(obj, list | tuple) and len(obj) == 4):
        raise MalformedInput("cose_invalid")
    protected, unprotected, payload, signature = obj
    if not (isinstance(protected, bytes) and isinstance(unprotected, dict | Mapping)
            and isinstance(payload, bytes) and isinstance(signature, bytes)
            and len(signature) == 64 and 0 < len(protected) <= 64):
        raise MalformedInput("cose_invalid")
    kid = _protected_kid(protected)
    if unprotected and HDR_CRIT in unprotected:  # RFC 9052 §3.1: crit only ever protected
        raise MalformedInput("cose_invalid")
    if kid is None and unprotected:
        # Typed ``object``, checked, then narrowed: compiled, a ``bytes | None`` variable
        # given another value (an unprotected ``{4: false}``) raises TypeError, not ours.
        loose: object = unprotected.get(HDR_KID)
        if loose is not None and not (isinstance(loose, bytes) and len(loose) <= 32):
            raise MalformedInput("cose_invalid")
        kid = loose if isinstance(loose, bytes) else None
    return Sign1(protected, payload, signature, kid)
