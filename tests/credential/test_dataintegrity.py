"""Data Integrity EdDSA: the published W3C vc-di-eddsa vectors, JCS, base58btc, and our VC view."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from c14n import canonicalize as reference_jcs  # type: ignore[import-untyped]  # cyberphone's JCS, shipped inside PyLD
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from credential import dataintegrity as di
from credential.errors import MalformedInput, Rejection, UsageError
from credential.jsonld import OfflineLoader
from credential.vc import to_vc

TESTS = Path(__file__).resolve().parents[1]  # vectors and examples copied from ../shared
VECTORS = TESTS / "vectors" / "vc-di-eddsa"
CONTEXTS = TESTS / "vectors" / "jsonld-contexts"
EXAMPLES = TESTS / "examples"


pytestmark = pytest.mark.usefixtures("no_network")  # proofs are made and checked offline


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


# The vectors use example vocabularies that pasaporte does not bundle: hand them over explicitly.
VECTOR_LOADER = OfflineLoader(
    extra={
        "https://www.w3.org/ns/credentials/examples/v2": _json(
            CONTEXTS / "credentials-examples-v2.jsonld"
        ),
        "https://w3id.org/citizenship/v4rc1": _json(CONTEXTS / "citizenship-v4rc1.jsonld"),
    }
)
KEY_PAIR = _json(VECTORS / "keyPair.json")
SEED = di.multikey_secret_decode(KEY_PAIR["privateKeyMultibase"])
PUBLIC = di.multikey_public_decode(KEY_PAIR["publicKeyMultibase"])


@dataclass(frozen=True)
class Vector:
    name: str
    cryptosuite: str
    folder: Path
    suffix: str
    unsigned: Path

    def file(self, stem: str, ext: str = "txt") -> Path:
        return self.folder / f"{stem}{self.suffix}.{ext}"


VECTOR_CASES = [
    Vector(
        "jcs-alumni", "eddsa-jcs-2022", VECTORS / "eddsa-jcs-2022", "JCS", VECTORS / "unsigned.json"
    ),
    Vector(
        "rdfc-alumni",
        "eddsa-rdfc-2022",
        VECTORS / "eddsa-rdfc-2022",
        "DataInt",
        VECTORS / "unsigned.json",
    ),
    Vector(
        "rdfc-employment",
        "eddsa-rdfc-2022",
        VECTORS / "eddsa-rdfc-2022" / "employ",
        "DataInt",
        VECTORS / "employmentAuth.json",
    ),
]
vector_cases = pytest.mark.parametrize("v", VECTOR_CASES, ids=lambda v: v.name)


def test_key_pair() -> None:
    assert bytes(SigningKey(SEED).verify_key) == PUBLIC
    assert di.multikey_public_encode(PUBLIC) == KEY_PAIR["publicKeyMultibase"]
    assert KEY_PAIR["publicKeyMultibase"].startswith("z6Mk")


@vector_cases
def test_canonical_forms_and_hashes(v: Vector) -> None:
    unsigned = _json(v.unsigned)
    config = _json(v.file("proofConfig", "json"))
    doc = di.canonical_document(unsigned, v.cryptosuite, loader=VECTOR_LOADER)
    proof = di.canonical_proof_config(config, unsigned["@context"], loader=VECTOR_LOADER)
    assert doc == v.file("canonDoc").read_bytes()
    assert proof == v.file("proofCanon").read_bytes()
    assert hashlib.sha256(doc).hexdigest() == _text(v.file("docHash"))
    assert hashlib.sha256(proof).hexdigest() == _text(v.file("proofHash"))
    assert di.hash_data(proof, doc).hex() == _text(v.file("combinedHash"))


@vector_cases
def test_create_reproduces_the_signed_vector(v: Vector) -> None:
    unsigned = _json(v.unsigned)
    config = _json(v.file("proofConfig", "json"))
    expected = _json(v.file("signed", "json"))
    signed = di.create_proof(
        unsigned,
        SEED,
        cryptosuite=v.cryptosuite,
        created=config["created"],
        loader=VECTOR_LOADER,
    )
    assert signed == expected
    value = signed["proof"]["proofValue"]
    assert value == _text(v.file("sigBTC58"))
    assert di.base58btc_decode(value[1:]).hex() == _text(v.file("sigHex"))
    assert signed["proof"]["verificationMethod"] == config["verificationMethod"]


@vector_cases
def test_verify_the_signed_vector(v: Vector) -> None:
    di.verify_proof(_json(v.file("signed", "json")), PUBLIC, loader=VECTOR_LOADER)


def _tamper_claim(doc: dict[str, Any]) -> None:
    doc["validFrom"] = "2023-01-02T00:00:00Z"


def _tamper_created(doc: dict[str, Any]) -> None:
    doc["proof"]["created"] = "2023-02-24T23:36:39Z"


def _tamper_signature(doc: dict[str, Any]) -> None:
    sig = bytearray(di.base58btc_decode(doc["proof"]["proofValue"][1:]))
    sig[0] ^= 1
    doc["proof"]["proofValue"] = "z" + di.base58btc_encode(bytes(sig))


def _tamper_context(doc: dict[str, Any]) -> None:
    doc["@context"] = [doc["@context"][0]]


TAMPERINGS = {
    "claim": _tamper_claim,
    "created": _tamper_created,
    "signature": _tamper_signature,
    "context": _tamper_context,
}


@vector_cases
@pytest.mark.parametrize("what", sorted(TAMPERINGS))
def test_tampered_vector_is_rejected(v: Vector, what: str) -> None:
    signed = _json(v.file("signed", "json"))
    TAMPERINGS[what](signed)
    with pytest.raises((Rejection, MalformedInput)) as info:
        di.verify_proof(signed, PUBLIC, loader=VECTOR_LOADER)
    # A context cut for RDFC drops terms; everything else must reach the signature check.
    expected = {"di_signature_invalid", "jsonld_term_dropped"}
    assert info.value.code in expected
    if what != "context":
        assert info.value.code == "di_signature_invalid"


@vector_cases
def test_other_key_is_rejected(v: Vector) -> None:
    signed = _json(v.file("signed", "json"))
    other = bytes(SigningKey(hashlib.sha256(SEED).digest()).verify_key)
    with pytest.raises(Rejection) as info:
        di.verify_proof(signed, other, loader=VECTOR_LOADER)
    assert info.value.code == "di_signature_invalid"


def test_malformed_proofs() -> None:
    signed = _json(VECTORS / "eddsa-jcs-2022" / "signedJCS.json")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"proof": [signed["proof"]]}, "di_proof_invalid"),
        (
            {"proof": {**signed["proof"], "cryptosuite": "ecdsa-rdfc-2019"}},
            "di_cryptosuite_unsupported",
        ),
        ({"proof": {**signed["proof"], "proofPurpose": "authentication"}}, "di_proof_invalid"),
        ({"proof": {**signed["proof"], "proofValue": "uAAAA"}}, "di_base58_invalid"),
        ({"proof": {**signed["proof"], "proofValue": "z0OIl"}}, "di_base58_invalid"),
        ({"proof": {**signed["proof"], "proofValue": "z2222"}}, "di_proof_invalid"),
        ({"proof": {**signed["proof"], "type": "Ed25519Signature2020"}}, "di_proof_invalid"),
    ]
    for change, code in cases:
        with pytest.raises(MalformedInput) as info:
            di.verify_proof({**signed, **change}, PUBLIC, loader=VECTOR_LOADER)
        assert info.value.code == code, change


def test_create_refuses_bad_arguments() -> None:
    unsigned = _json(VECTORS / "unsigned.json")
    with pytest.raises(UsageError) as usage:
        di.create_proof(unsigned, SEED[:31], cryptosuite="eddsa-jcs-2022")
    assert usage.value.code == "di_key_invalid"
    with pytest.raises(MalformedInput) as info:
        di.create_proof(unsigned, SEED, cryptosuite="eddsa-2022")
    assert info.value.code == "di_cryptosuite_unsupported"
    assert "eddsa-2022" in info.value.message["en"]
    signed = di.create_proof(unsigned, SEED, cryptosuite="eddsa-jcs-2022")
    with pytest.raises(UsageError) as usage:
        di.create_proof(signed, SEED, cryptosuite="eddsa-jcs-2022")
    assert usage.value.code == "di_proof_invalid"
    assert usage.value.detail == {"reason": "the document already has a proof"}


# --- our own VC view ---------------------------------------------------------------------------


def _our_vc(disclosed: tuple[str, ...] | None = None) -> dict[str, Any]:
    claims = _json(EXAMPLES / "claims-mexicali.json")
    return to_vc(
        claims,
        credential_id="58172aac-d8ba-11ed-83dd-0b3aef56cc33",
        issuer="https://mexicali.gob.mx/pasaporte",
        valid_from="2026-11-22T00:00:00Z",
        valid_until="2029-11-21T23:59:59Z",
        disclosed=disclosed,
    )


@pytest.mark.parametrize("cryptosuite", di.CRYPTOSUITES)
@pytest.mark.parametrize("disclosed", [None, ("residence", "library")])
def test_sign_and_verify_our_vc(cryptosuite: str, disclosed: tuple[str, ...] | None) -> None:
    seed = hashlib.sha256(b"pasaporte test office key").digest()
    public = bytes(SigningKey(seed).verify_key)
    signed = di.create_proof(
        _our_vc(disclosed), seed, cryptosuite=cryptosuite, created="2026-11-22T08:00:00Z"
    )
    assert signed["proof"]["verificationMethod"] == di.did_key_verification_method(public)
    di.verify_proof(signed, public)  # bundled contexts only: no extra loader
    again = di.create_proof(
        _our_vc(disclosed), seed, cryptosuite=cryptosuite, created="2026-11-22T08:00:00Z"
    )
    assert again == signed  # Ed25519 is deterministic, so is canonicalization

    signed["credentialSubject"]["residence"]["city"] = "Calexico"
    with pytest.raises(Rejection) as info:
        di.verify_proof(signed, public)
    assert info.value.code == "di_signature_invalid"


def test_rdfc_refuses_to_sign_an_undefined_term() -> None:
    vc = _our_vc()
    vc["credentialSubject"]["nickname"] = "Lupita"  # would vanish from the signed graph
    with pytest.raises(MalformedInput) as info:
        di.create_proof(vc, SEED, cryptosuite="eddsa-rdfc-2022")
    assert info.value.code == "jsonld_term_dropped"


# --- RFC 8785 JCS ------------------------------------------------------------------------------


def test_jcs_sorts_keys_by_utf16_code_units() -> None:
    # RFC 8785 §3.2.3's example: U+1F600 (a surrogate pair, D83D) sorts before U+FB33.
    doc = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5, "\u0080": 6, "\u00f6": 7}
    text = di.jcs(doc).decode("utf-8")
    assert list(json.loads(text)) == [
        "\r",
        "1",
        "\u0080",
        "\u00f6",
        "\u20ac",
        "\U0001f600",
        "\ufb33",
    ]


def test_jcs_escapes_and_numbers() -> None:
    value = {
        "s": '\u2028"\\\b\f\n\r\t\x00\x1f\x7f é',
        "n": [-0.0, 1.0, 1e21, 1e-7, 123456789012, 0.1],
    }
    assert di.jcs(value) == reference_jcs(value)
    assert di.jcs([1e21, 1e-7, 1e20, 1e-6]) == b"[1e+21,1e-7,100000000000000000000,0.000001]"


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2**53 + 1, "\ud800", {1: "x"}, b"bytes"])
def test_jcs_refuses_what_json_cannot_say(bad: Any) -> None:
    with pytest.raises(MalformedInput) as info:
        di.jcs([bad])
    assert info.value.code == "di_json_unsupported"


_BMP_KEYS = st.text(st.characters(max_codepoint=0xFFFF, codec="utf-8"), max_size=8)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_BMP_KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_jcs_matches_the_reference_implementation(value: Any) -> None:
    # The reference sorts by code point, which equals UTF-16 order for BMP keys only.
    assert di.jcs(value) == reference_jcs(value)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_jcs_numbers_round_trip(value: float) -> None:
    text = di.jcs(value)
    assert text == reference_jcs(value)
    assert float(text) == value


# --- base58btc ---------------------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    assert di.base58btc_decode(di.base58btc_encode(data)) == data


def test_base58_leading_zeros_and_limits() -> None:
    assert di.base58btc_encode(b"\0\0\x01") == "112"
    assert di.base58btc_decode("") == b""
    for bad in ("0", "O", "I", "l", "+", "1" * 513):
        with pytest.raises(MalformedInput) as info:
            di.base58btc_decode(bad)
        assert info.value.code == "di_base58_invalid"


def test_multikey_rejects_other_codecs() -> None:
    with pytest.raises(MalformedInput) as info:
        di.multikey_public_decode(KEY_PAIR["privateKeyMultibase"])
    assert info.value.code == "di_key_invalid"
    with pytest.raises(MalformedInput) as info:
        di.multikey_secret_decode(KEY_PAIR["publicKeyMultibase"])
    assert info.value.code == "di_key_invalid"
