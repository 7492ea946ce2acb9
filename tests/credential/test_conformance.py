"""Edges where the standards are stricter than a Python reading of the bytes would be: each
found by a standards review, each something another implementation reads differently."""

from __future__ import annotations

import cbor2
import nacl.signing
import pytest

from credential import cbor, cose
from credential.dataintegrity import create_proof
from credential.errors import MalformedInput
from credential.passport import _payload

KEY = nacl.signing.SigningKey(bytes(range(32)))


def _sign1(header: dict[object, object], unprotected: dict[object, object] | None = None
           ) -> list[object]:
    protected = cbor2.dumps(header)
    signature = KEY.sign(cose.sig_structure(protected, b"payload")).signature
    return [protected, unprotected or {}, b"payload", signature]


def test_a_critical_header_is_refused() -> None:
    """RFC 9052 §3.1: what ``crit`` lists must be understood; we understand no extension. And
    ``crit`` anywhere but the protected bucket is an error in itself."""
    # without crit, the same unknown labels are read (and ignored): crit is what is refused
    assert cose.parse_sign1(_sign1({1: -8, -70000: 1}, {99: 1})).kid is None
    with pytest.raises(MalformedInput) as err:
        cose.parse_sign1(_sign1({1: -8, 2: [-70000], -70000: 1}))
    assert err.value.code == "cose_invalid"
    with pytest.raises(MalformedInput) as err:
        cose.parse_sign1(_sign1({1: -8}, {2: [99], 99: 1}))
    assert err.value.code == "cose_invalid"


def test_the_fully_specified_ed25519_algorithm_is_read() -> None:
    """RFC 9864 registers Ed25519 (-19) for what EdDSA (-8) meant here: both are read."""
    assert cose.parse_sign1(_sign1({1: -19, 4: b"k1"})).kid == b"k1"
    assert cose.parse_sign1(_sign1({1: -8, 4: b"k1"})).kid == b"k1"
    with pytest.raises(MalformedInput) as err:
        cose.parse_sign1(_sign1({1: -7}))  # ES256: not ours
    assert err.value.code == "cose_invalid"


@pytest.mark.parametrize("key", [True, 1.0])
def test_true_and_one_point_zero_are_not_the_label_one(key: object) -> None:
    """To CBOR, ``true``, ``1.0`` and ``1`` are three keys; to a Python dict, one. A map keyed
    by either would mean one thing to us and another to every other COSE/CWT reader."""
    with pytest.raises(MalformedInput) as err:
        cbor.loads(cbor2.dumps({key: -8}))
    assert err.value.code == "cbor_invalid"
    assert err.value.detail == {"reason": "decode: map key not allowed"}
    with pytest.raises(MalformedInput) as err:
        cose.parse_sign1([cbor2.dumps({key: -8}), {}, b"payload", bytes(64)])
    assert err.value.code == "cose_invalid"


def test_a_holder_key_must_say_okp_and_ed25519_as_integers() -> None:
    """RFC 8747 / RFC 9053: kty 1 (OKP) and crv 6 (Ed25519) are integers, not ``true`` and
    ``6.0`` that Python takes for them."""
    x = bytes(KEY.verify_key)
    good = {1: "MX-MXL", 6: 0, 5: 0, 4: 10, 7: b"c" * 16, -65537: [1, 2, bytes(16)]}
    whole = cbor2.dumps({**good, 8: {1: {1: 1, -1: 6, -2: x}}})
    assert _payload(cose.Sign1(b"\xa1\x01\x27", whole, bytes(64), None)).holder_key == x
    for cnf_key in ({1: True, -1: 6, -2: x}, {1: 1, -1: 6.0, -2: x}):
        payload = cbor2.dumps({**good, 8: {1: cnf_key}})
        with pytest.raises(MalformedInput) as err:
            _payload(cose.Sign1(b"\xa1\x01\x27", payload, bytes(64), None))
        assert err.value.code == "shape_invalid" and err.value.detail == {"what": "cnf"}


def test_a_proof_created_time_must_be_a_date_time_stamp() -> None:
    """VC Data Integrity §2.1: ``created`` is an xsd:dateTimeStamp (a time with its zone)."""
    document = {"@context": ["https://www.w3.org/ns/credentials/v2"], "type": ["Thing"]}
    for created in ("yesterday", "2026-11-23T10:00:00"):
        with pytest.raises(MalformedInput) as err:
            create_proof(document, bytes(32), cryptosuite="eddsa-jcs-2022", created=created)
        assert err.value.code == "di_proof_invalid"
        assert err.value.detail == {"reason": "created is not a date-time with a zone"}
    proof = create_proof(document, bytes(32), cryptosuite="eddsa-jcs-2022",
                         created="2026-11-23T10:00:00Z")
    assert proof["proof"]["created"] == "2026-11-23T10:00:00Z"
