"""Sealed keys (``credential.keys.seal``): a damaged one is a typed error, never the KDF's own
error, a huge allocation, or a wrong passphrase."""

from __future__ import annotations

from typing import Any

import cbor2
import nacl.pwhash.argon2id
import pytest

from credential.errors import StoreError
from credential.keys import seal, sealed_whole, unseal

SECRET = bytes(range(32))


def _edit(**changes: Any) -> bytes:
    doc = cbor2.loads(seal(SECRET, "correct horse"))
    doc.update(changes)
    return cbor2.dumps({k: v for k, v in doc.items() if v is not None})


DAMAGED = {
    "short salt": _edit(salt=b"x" * 8),
    "text salt": _edit(salt="x" * 16),
    "no salt": _edit(salt=None),
    "box cut short": _edit(box=b"x" * 30),
    "ops zero": _edit(ops=0),
    "ops negative": _edit(ops=-5),
    "ops huge": _edit(ops=2**40),
    "mem tiny": _edit(mem=1),
    "mem of gigabytes": _edit(mem=2**33),
    "mem as text": _edit(mem="65536"),
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
                              mem=nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE))
