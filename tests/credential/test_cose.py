"""COSE_Sign1: the published Ed25519 example, and interop with an independent implementation."""

from __future__ import annotations

import json

import cbor2
import nacl.signing
from pycose.keys.okp import OKPKey
from pycose.messages.sign1message import Sign1Message

from credential import cose
from tests.factory import VECTORS, City


def test_cose_wg_eddsa_sig_01() -> None:
    case = json.loads((VECTORS / "cose/eddsa-examples/eddsa-sig-01.json").read_text())
    key = case["input"]["sign0"]["key"]
    message = cbor2.loads(bytes.fromhex(case["output"]["cbor"]))
    parsed = cose.parse_sign1(message)
    to_be_signed = cose.sig_structure(parsed.protected, parsed.payload)
    assert to_be_signed == bytes.fromhex(case["intermediates"]["ToBeSign_hex"])
    assert parsed.kid == b"11"
    assert parsed.verify(bytes.fromhex(key["x_hex"]))
    # Ed25519 is deterministic: our signer reproduces the published signature.
    signer = nacl.signing.SigningKey(bytes.fromhex(key["d_hex"]))
    assert signer.sign(to_be_signed).signature == parsed.signature
    assert not parsed.verify(bytes(nacl.signing.SigningKey.generate().verify_key))


def test_pycose_verifies_our_credential() -> None:
    city = City()
    cred = city.issue()
    # pycose's decode() expects a list under the tag but current cbor2 yields a tuple there,
    # so hand pycose the decoded array directly; the parsing and verification are still its own.
    wire = cbor2.loads(cbor2.dumps(cred.cose))
    msg = Sign1Message.from_cose_obj(list(wire), True)
    msg.key = OKPKey(crv="Ed25519", x=bytes(city.office_key.verify_key))
    assert msg.verify_signature()
    msg.key = OKPKey(crv="Ed25519", x=bytes(City().office_key.verify_key))
    assert not msg.verify_signature()


def test_pycose_signed_message_verifies_here() -> None:
    from pycose.algorithms import EdDSA
    from pycose.headers import KID, Algorithm

    sk = nacl.signing.SigningKey.generate()
    key = OKPKey(crv="Ed25519", d=bytes(sk), x=bytes(sk.verify_key))
    msg = Sign1Message(phdr={Algorithm: EdDSA, KID: b"k1"}, payload=b"hola", key=key)
    encoded = cbor2.loads(msg.encode(tag=True))
    parsed = cose.parse_sign1(encoded)
    assert parsed.kid == b"k1" and parsed.verify(bytes(sk.verify_key))


def test_a_kid_of_the_wrong_type_is_malformed_input() -> None:
    """Found by fuzzing the compiled decoder: a kid that is no byte string, in either header,
    is refused as ``cose_invalid`` (it was a TypeError from the compiled code)."""
    import pytest

    from credential.errors import MalformedInput

    protected = cbor2.dumps({1: -8})
    for kid in (False, True, 5, "kid", [b"k"], {1: 2}, b"x" * 33):
        with pytest.raises(MalformedInput) as err:
            cose.parse_sign1([protected, {4: kid}, b"", b"\x00" * 64])
        assert err.value.code == "cose_invalid"
        with pytest.raises(MalformedInput) as err:
            cose.parse_sign1([cbor2.dumps({1: -8, 4: kid}), {}, b"", b"\x00" * 64])
        assert err.value.code == "cose_invalid"
    assert cose.parse_sign1([protected, {4: b"kid"}, b"", b"\x00" * 64]).kid == b"kid"
