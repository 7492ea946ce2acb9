"""W3C Data Integrity EdDSA proofs (``eddsa-jcs-2022`` and ``eddsa-rdfc-2022``) for JSON-LD
documents such as the VC view of :mod:`credential.vc`, with the pieces they stand on: an RFC 8785
JSON Canonicalization Scheme serializer, base58btc, and Ed25519 Multikey encodings.

Both suites sign ``SHA-256(canonical proof configuration) || SHA-256(canonical document)`` with
Ed25519 (W3C vc-di-eddsa §3.2/§3.3). JCS canonicalizes the JSON text; RDFC canonicalizes the RDF
graph through :func:`credential.jsonld.canonize`, i.e. with bundled contexts only, and strictly: a
term the contexts do not define would be missing from the graph and so from the signature.

:func:`verify_proof` raises ``Rejection("di_signature_invalid")`` for a proof that does not match
and ``MalformedInput("di_*")`` for one that cannot be read; it returns nothing when all is well.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from credential.errors import MalformedInput, Rejection, UsageError
from credential.jsonld import OfflineLoader, canonize
from credential.times import DATETIME_STAMP

__all__ = [
    "CRYPTOSUITES",
    "base58btc_decode",
    "base58btc_encode",
    "canonical_document",
    "canonical_proof_config",
    "create_proof",
    "did_key_verification_method",
    "hash_data",
    "jcs",
    "multikey_public_decode",
    "multikey_public_encode",
    "multikey_secret_decode",
    "verify_proof",
]

CRYPTOSUITES = ("eddsa-jcs-2022", "eddsa-rdfc-2022")

# ---------------------------------------------------------------------------------------------
# RFC 8785 JSON Canonicalization Scheme

_MAX_SAFE_INTEGER = 2**53  # beyond it an integer is not exactly an IEEE-754 double
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f"}
_SHORT_ESCAPES["\r"] = "\\r"
_MAX_DEPTH = 64


def _jcs_string(value: str) -> str:
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            # A lone surrogate has no UTF-8 form; RFC 8785 §3.2.2.2 makes it an error.
            raise MalformedInput("di_json_unsupported", reason="lone surrogate in a string")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _jcs_number(value: float) -> str:
    """ECMAScript Number::toString (ECMA-262 §6.1.6.1.20), as RFC 8785 §3.2.2.3 requires."""
    if not math.isfinite(value):
        raise MalformedInput("di_json_unsupported", reason="NaN or Infinity")
    if value == 0:
        return "0"  # also -0
    sign = "-" if value < 0 else ""
    # repr() gives the shortest digits that round-trip, which is what ECMAScript asks for.
    _, digit_tuple, exponent = Decimal(repr(abs(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    assert isinstance(exponent, int)
    exponent += len(digit_tuple) - len(digits)
    k = len(digits)
    n = k + exponent  # value = 0.digits × 10^n
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
    return sign + text


def _jcs(value: Any, out: list[str], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedInput("di_json_unsupported", reason="nesting too deep")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > _MAX_SAFE_INTEGER:
            raise MalformedInput("di_json_unsupported", reason="integer beyond 2^53")
        out.append(_jcs_number(float(value)))
    elif isinstance(value, float):
        out.append(_jcs_number(value))
    elif isinstance(value, str):
        out.append(_jcs_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _jcs(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise MalformedInput("di_json_unsupported", reason="object key is not a string")
        out.append("{")
        # RFC 8785 §3.2.3: sort by UTF-16 code units, which big-endian UTF-16 bytes preserve.
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_jcs_string(key))
            out.append(":")
            _jcs(value[key], out, depth + 1)
        out.append("}")
    else:
        raise MalformedInput("di_json_unsupported", reason=type(value).__name__)


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical UTF-8 of a JSON value (dict, list, str, int, float, bool, None)."""
    out: list[str] = []
    _jcs(value, out, 0)
    return "".join(out).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# base58btc and Multikey

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}
# Keys and signatures are under 100 characters; the cap keeps the quadratic big-int path cheap.
_MAX_B58_CHARS = 512
_ED25519_PUB = b"\xed\x01"  # multicodec ed25519-pub, varint
_ED25519_PRIV = b"\x80\x26"  # multicodec ed25519-priv, varint


def base58btc_encode(data: bytes) -> str:
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, rem = divmod(number, 58)
        chars.append(_B58[rem])
    return "1" * zeros + "".join(reversed(chars))


def base58btc_decode(text: str) -> bytes:
    if not isinstance(text, str) or len(text) > _MAX_B58_CHARS:
        raise MalformedInput("di_base58_invalid")
    number = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise MalformedInput("di_base58_invalid")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _multibase_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("z"):
        raise MalformedInput("di_base58_invalid")
    return base58btc_decode(text[1:])


def multikey_public_encode(public_key: bytes) -> str:
    """``publicKeyMultibase`` of a 32-byte Ed25519 public key (``z6Mk…``)."""
    if len(public_key) != 32:
        raise UsageError("di_key_invalid", reason="an Ed25519 public key has 32 bytes")
    return "z" + base58btc_encode(_ED25519_PUB + public_key)


def _multikey_decode(text: str, prefix: bytes, what: str) -> bytes:
    raw = _multibase_decode(text)
    if raw[:2] != prefix or len(raw) != 34:
        raise MalformedInput("di_key_invalid", reason=f"not an Ed25519 {what} Multikey")
    return raw[2:]


def multikey_public_decode(text: str) -> bytes:
    """The 32 raw bytes of an Ed25519 ``publicKeyMultibase``."""
    return _multikey_decode(text, _ED25519_PUB, "public")


def multikey_secret_decode(text: str) -> bytes:
    """The 32-byte Ed25519 seed of a ``secretKeyMultibase`` (``privateKeyMultibase``)."""
    return _multikey_decode(text, _ED25519_PRIV, "secret")


def did_key_verification_method(public_key: bytes) -> str:
    """``did:key:z6Mk…#z6Mk…``: a verification method that carries its own key."""
    key = multikey_public_encode(public_key)
    return f"did:key:{key}#{key}"


# ---------------------------------------------------------------------------------------------
# Proofs


def _check_suite(cryptosuite: str) -> None:
    if cryptosuite not in CRYPTOSUITES:
        raise MalformedInput("di_cryptosuite_unsupported", cryptosuite=str(cryptosuite))


def canonical_document(
    document: Mapping[str, Any], cryptosuite: str, *, loader: OfflineLoader | None = None
) -> bytes:
    """The suite's canonical form of ``document`` (its ``proof``, if any, is left out)."""
    _check_suite(cryptosuite)
    unsecured = {k: v for k, v in document.items() if k != "proof"}
    if cryptosuite == "eddsa-jcs-2022":
        return jcs(unsecured)
    return canonize(unsecured, loader=loader).encode("utf-8")


def canonical_proof_config(
    proof_options: Mapping[str, Any],
    document_context: Any,
    *,
    loader: OfflineLoader | None = None,
) -> bytes:
    """The canonical proof configuration: the options (no ``proofValue``) in the document's
    ``@context`` (None when the document has none)."""
    cryptosuite = proof_options.get("cryptosuite")
    _check_suite(str(cryptosuite))
    if proof_options.get("type") != "DataIntegrityProof":
        raise MalformedInput("di_proof_invalid", reason="type is not DataIntegrityProof")
    created = proof_options.get("created")
    if created is not None and not (isinstance(created, str) and DATETIME_STAMP.match(created)):
        # VC Data Integrity §2.1: an xsd:dateTimeStamp, a time with its zone
        raise MalformedInput("di_proof_invalid", reason="created is not a date-time with a zone")
    config = {k: v for k, v in proof_options.items() if k != "proofValue"}
    if document_context is not None:
        config["@context"] = document_context
    if cryptosuite == "eddsa-jcs-2022":
        return jcs(config)
    return canonize(config, loader=loader).encode("utf-8")


def hash_data(canonical_proof_config: bytes, canonical_document: bytes) -> bytes:
    """What is signed: SHA-256 of the proof configuration, then SHA-256 of the document."""
    return (
        hashlib.sha256(canonical_proof_config).digest()
        + hashlib.sha256(canonical_document).digest()
    )


def create_proof(
    document: Mapping[str, Any],
    signing_key: bytes,
    *,
    cryptosuite: str,
    verification_method: str | None = None,
    created: str | None = None,
    proof_purpose: str = "assertionMethod",
    loader: OfflineLoader | None = None,
) -> dict[str, Any]:
    """``document`` with a Data Integrity ``proof`` signed by the 32-byte Ed25519 seed.

    ``verification_method`` defaults to the key's ``did:key``; ``created`` (an XML Schema
    dateTime) is omitted when not given, so the same inputs give the same proof.
    """
    _check_suite(cryptosuite)
    if len(signing_key) != 32:
        raise UsageError("di_key_invalid", reason="an Ed25519 seed has 32 bytes")
    if "proof" in document:
        raise UsageError("di_proof_invalid", reason="the document already has a proof")
    key = SigningKey(signing_key)
    proof: dict[str, Any] = {"type": "DataIntegrityProof", "cryptosuite": cryptosuite}
    if created is not None:
        proof["created"] = created
    proof["verificationMethod"] = verification_method or did_key_verification_method(
        bytes(key.verify_key)
    )
    proof["proofPurpose"] = proof_purpose
    context = document.get("@context")
    if cryptosuite == "eddsa-jcs-2022" and context is not None:
        # JCS has no graph to carry the context into, so the proof states it (vc-di-eddsa §3.3.1).
        proof["@context"] = context
    data = hash_data(
        canonical_proof_config(proof, context, loader=loader),
        canonical_document(document, cryptosuite, loader=loader),
    )
    proof["proofValue"] = "z" + base58btc_encode(key.sign(data).signature)
    return {**document, "proof": proof}


def verify_proof(
    document: Mapping[str, Any],
    public_key: bytes,
    *,
    expected_purpose: str = "assertionMethod",
    loader: OfflineLoader | None = None,
) -> None:
    """Check the document's single Data Integrity proof against a 32-byte Ed25519 public key.

    The caller has resolved the verification method to ``public_key`` (from a trust bundle); a
    ``did:key`` method must name that same key.
    """
    proof = document.get("proof")
    if not isinstance(proof, Mapping):
        raise MalformedInput("di_proof_invalid", reason="exactly one proof object expected")
    cryptosuite = proof.get("cryptosuite")
    _check_suite(str(cryptosuite))
    if proof.get("proofPurpose") != expected_purpose:
        raise MalformedInput("di_proof_invalid", reason="unexpected proofPurpose")
    method = proof.get("verificationMethod")
    if not isinstance(method, str):
        raise MalformedInput("di_proof_invalid", reason="verificationMethod missing")
    if len(public_key) != 32:
        raise UsageError("di_key_invalid", reason="an Ed25519 public key has 32 bytes")
    if method.startswith("did:key:"):
        named = method.removeprefix("did:key:").split("#", 1)[0]
        if multikey_public_decode(named) != public_key:
            raise Rejection("di_signature_invalid")
    signature = _multibase_decode(proof.get("proofValue", ""))
    if len(signature) != 64:
        raise MalformedInput("di_proof_invalid", reason="proofValue is not a 64-byte signature")
    context = document.get("@context")
    if cryptosuite == "eddsa-jcs-2022" and "@context" in proof:
        # The proof's context must be the document's, or a prefix of it (vc-di-eddsa §3.3.2).
        stated = proof["@context"] if isinstance(proof["@context"], list) else [proof["@context"]]
        actual = context if isinstance(context, list) else [context]
        if actual[: len(stated)] != stated:
            raise Rejection("di_signature_invalid")
        context = proof["@context"]
        document = {**document, "@context": context}
    data = hash_data(
        canonical_proof_config(proof, context, loader=loader),
        canonical_document(document, str(cryptosuite), loader=loader),
    )
    try:
        VerifyKey(public_key).verify(data, signature)
    except BadSignatureError:
        raise Rejection("di_signature_invalid") from None
