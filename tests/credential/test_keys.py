"""Sealed keys (``credential.keys.seal``): a damaged one is a typed error, never the KDF's own
error, a huge allocation, or a wrong passphrase."""

from __future__ import annotations

from typing import Any

import cbor2
import nacl.pwhash.argon2id
import nacl.signing
import pytest

from credential.errors import StoreError
from credential.keys import seal, sealed_whole, unseal

SECRET = bytes(range(32))


def _edit(**changes: Any) -> bytes:
    doc = cbor2.loads(seal(SECRET, "correct horse"))
    doc.update(changes)
    return cbor2.dumps({k: v for k, v in doc.items() if v is not None})


# Each field's own bound refuses it, whatever the "check" digest would (a key sealed before
# the digest was kept has none: with it left in, the digest alone refused these, and a bound
# removed from the code, an 8 GiB Argon2id allocation for such a key, went unnoticed).
DAMAGED = {
    "short salt": _edit(salt=b"x" * 8, check=None),
    "text salt": _edit(salt="x" * 16, check=None),
    "no salt": _edit(salt=None, check=None),
    "box cut short": _edit(box=b"x" * 30, check=None),
    "ops zero": _edit(ops=0, check=None),
    "ops negative": _edit(ops=-5, check=None),
    "ops huge": _edit(ops=2**40, check=None),
    "mem tiny": _edit(mem=1, check=None),
    "mem of gigabytes": _edit(mem=2**33, check=None),
    "mem as text": _edit(mem="65536", check=None),
    "not a map": cbor2.dumps([1, 2, 3]),
    "not cbor": b"\xff\x00junk",
    "empty": b"",
    "huge": b"\x00" * 100_000,
}


@pytest.mark.parametrize("blob", DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_sealed_key_is_named_as_such(blob: bytes) -> None:
    assert not sealed_whole(blob)
    with pytest.raises(StoreError) as caught:
        unseal(blob, "correct horse")
    assert caught.value.code == "sealed_key_damaged"


def test_a_whole_one_opens_with_its_passphrase_only() -> None:
    blob = seal(SECRET, "correct horse")
    assert sealed_whole(blob) and unseal(blob, "correct horse") == SECRET
    with pytest.raises(StoreError) as caught:
        unseal(blob, "wrong horse")
    assert caught.value.code == "passphrase_wrong"
    # costs at the library's strongest preset are still a sealed key
    assert sealed_whole(_edit(ops=nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE,
                              mem=nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE, check=None))


def _flipped(field: str, at: int) -> bytes:
    doc = cbor2.loads(seal(SECRET, "correct horse"))
    value = bytearray(doc[field])
    value[at] ^= 0x01
    doc[field] = bytes(value)
    return cbor2.dumps(doc)


# One bit changed on disk used to fail the box's tag exactly as a wrong passphrase does: the
# resident was told to type it again, and no passphrase would ever do.
@pytest.mark.parametrize(("field", "at"), [("salt", 0), ("box", 0), ("box", 30), ("box", -1),
                                           ("check", 3)])
def test_a_changed_byte_is_damage_not_a_wrong_passphrase(field: str, at: int) -> None:
    blob = _flipped(field, at)
    assert not sealed_whole(blob)
    with pytest.raises(StoreError) as caught:
        unseal(blob, "correct horse")
    assert caught.value.code == "sealed_key_damaged"


def test_a_key_sealed_before_the_check_was_kept_still_opens() -> None:
    old = _edit(check=None)
    assert "check" not in cbor2.loads(old)
    assert sealed_whole(old) and unseal(old, "correct horse") == SECRET
    with pytest.raises(StoreError) as caught:
        unseal(old, "wrong horse")
    assert caught.value.code == "passphrase_wrong"


@pytest.mark.parametrize(("text", "reason"), [
    ("AAAA", "public_key: got 3 bytes, want 32"),
    ("not base64url!", "public_key: not base64url"),
    ("AB", "public_key: not base64url"),  # non-canonical trailing bits: one value, one text
    ("AA+/", "public_key: not base64url"),  # base64, not base64url
])
def test_a_key_text_that_is_not_one_is_key_invalid(text: str, reason: str) -> None:
    from credential.errors import MalformedInput
    from credential.keys import b64url, unb64url

    assert unb64url(b64url(SECRET), length=32, what="public_key") == SECRET
    with pytest.raises(MalformedInput) as caught:
        unb64url(text, length=32, what="public_key")
    assert caught.value.code == "key_invalid" and caught.value.detail == {"reason": reason}


def test_a_point_off_the_curve_or_of_small_order_is_key_invalid() -> None:
    from credential.errors import MalformedInput
    from credential.keys import check_public_key

    good = bytes(nacl.signing.SigningKey(SECRET).verify_key)
    assert check_public_key(good) == good
    for bad in (bytes(32), b"\x01" + bytes(31), good[:31]):  # small order (0, 1), short
        with pytest.raises(MalformedInput) as caught:
            check_public_key(bad, "holder key")
        assert caught.value.code == "key_invalid"
        assert caught.value.detail == {"reason": "holder key: not an Ed25519 public key"}


def test_a_holder_key_of_the_wrong_length_is_not_signed_into_a_passport() -> None:
    from credential.errors import MalformedInput
    from tests.factory import City, example_claims

    with pytest.raises(MalformedInput) as caught:
        City().issue_for(b"\x01" * 31, example_claims())
    assert caught.value.code == "key_invalid"
    assert "holder key must be 32 bytes" in caught.value.message["en"]


def test_accented_letters_typed_composed_or_not_open_one_key() -> None:
    """One keyboard types "ñ" as one character, another as "n" and a combining tilde: the
    same passphrase to the clerk, and an office's staff was locked out by the other one."""
    import unicodedata

    from credential.keys import seal, unseal

    composed = "contraseña-Ámbar"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    for sealed_under in (composed, decomposed):
        blob = seal(b"s" * 32, sealed_under)
        assert unseal(blob, composed) == unseal(blob, decomposed) == b"s" * 32
        with pytest.raises(StoreError) as caught:
            unseal(blob, "contrasena-Ambar")  # no accents at all is another passphrase
        assert caught.value.code == "passphrase_wrong"
