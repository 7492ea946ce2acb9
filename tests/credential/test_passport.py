"""``credential.passport``: what the issuer may sign is what every counter reads."""

from __future__ import annotations

import os
import random

import cbor2
import pytest

from credential import cose, transport
from credential.errors import MalformedInput, UsageError
from credential.passport import (
    CNF,
    COSE_KEY,
    CRV,
    MAX_DISCLOSURE,
    decode_bytes,
    parse_nonce,
)
from tests.factory import NOW, City, example_claims


def _widest(rng: random.Random, n: int) -> str:
    """``n`` characters of four UTF-8 bytes each, from a wide range (zlib cannot shrink them)."""
    return "".join(chr(rng.randrange(0x20000, 0x2A6DF)) for _ in range(n))


@pytest.mark.parametrize("catalogued", [False, True])
def test_the_longest_claims_the_schema_allows_verify(catalogued: bool) -> None:
    rng = random.Random(5)
    claims = example_claims()
    claims["given_name"], claims["family_name"] = _widest(rng, 100), _widest(rng, 100)
    claims["residence"]["city"] = _widest(rng, 80)
    claims["library"]["system"] = _widest(rng, 120)
    claims["clinic"]["network"] = _widest(rng, 120)
    city = City(catalogued=catalogued)
    cred = city.issue(claims)
    assert max(len(d) for d in cred.disclosures) <= MAX_DISCLOSURE
    result = city.verifier().verify(transport.pack(cred.to_cbor()), service="clinic", now=NOW)
    assert result.accepted, result.code


def test_a_group_over_the_verifier_limit_is_refused_at_issuance(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("credential.passport.MAX_DISCLOSURE", 200)
    claims = example_claims()
    claims["given_name"] = claims["family_name"] = "ñ" * 100
    with pytest.raises(UsageError) as raised:
        City().issue(claims)
    assert raised.value.code == "claims_invalid" and "names" in raised.value.message["en"]
    assert "bytes" in raised.value.message["en"] and "bytes" in raised.value.message["es"]


def test_a_counter_challenge_is_read_one_way_by_wallet_and_counter() -> None:
    assert parse_nonce(None) is None
    # text in capitals: "8f3k" typed for the "8F3K" on the counter's screen is the same answer
    assert parse_nonce("8f3k") == parse_nonce("8F3K") == b"8F3K"
    assert parse_nonce("ventanilla-7") == b"VENTANILLA-7"
    assert parse_nonce("ñ") == "Ñ".encode()
    # one spelling of "ñ" (NFC), blanks at the ends dropped: a script's NFD is the same answer
    assert parse_nonce(" Sen\u0303al ") == parse_nonce("Señal") == "SEÑAL".encode()
    assert parse_nonce("hex:00ff10") == b"\x00\xff\x10"
    assert parse_nonce("HEX:AB") == b"\xab"
    # typed on a Latin-1 terminal: said so (it was an internal error in ``encode``)
    with pytest.raises(UsageError) as err:
        parse_nonce(os.fsdecode(b"se\xf1al"))
    assert err.value.code == "text_not_utf8" and "--nonce" in err.value.message["es"]
    for bad in ("", " ", "hex:", "hex:zz", "x" * 65):
        with pytest.raises(UsageError) as err:
            parse_nonce(bad)
        assert err.value.code == "nonce_invalid"


@pytest.mark.parametrize("salt", [b"", bytes(15), bytes(17)])
def test_a_disclosure_salt_of_another_length_is_refused(salt: bytes) -> None:
    """128 bits, exactly: a shorter salt makes a hidden group's digest guessable."""
    envelope = cbor2.loads(City().issue_for(None, example_claims()).to_cbor())
    _, key, value = cbor2.loads(envelope[1][0])
    envelope[1][0] = cbor2.dumps([salt, key, value])
    with pytest.raises(MalformedInput) as caught:
        decode_bytes(cbor2.dumps(envelope))
    assert caught.value.code == "shape_invalid" and "disclosure" in caught.value.message["en"]


@pytest.mark.parametrize("crv", [1, 4, 7])  # P-256, X25519, secp256k1 … anything not Ed25519
def test_a_holder_key_on_another_curve_is_refused(crv: int) -> None:
    """RFC 8747's cnf with a COSE_Key: only OKP/Ed25519 is ours to verify a holder with."""
    city = City()
    envelope = cbor2.loads(city.issue_for(bytes(32), example_claims()).to_cbor())
    payload = cbor2.loads(envelope[0][2])
    payload[CNF][COSE_KEY][CRV] = crv
    envelope[0] = cose.sign1(city.office_key, cbor2.dumps(payload), kid=city.kid)
    with pytest.raises(MalformedInput) as caught:
        decode_bytes(cbor2.dumps(envelope))
    assert caught.value.code == "shape_invalid" and "cnf" in caught.value.message["en"]
