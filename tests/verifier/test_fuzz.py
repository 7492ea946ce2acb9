"""No input makes the engine raise, hang or allocate: everything ends in a typed rejection."""

from __future__ import annotations

import random

import cbor2
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credential import base45, transport
from credential.errors import message_catalog
from tests.factory import NOW, City, presentation
from verifier.engine import Verifier

_CITY = City()
_HOLDER = nacl.signing.SigningKey.generate()
_CRED = _CITY.issue(holder=_HOLDER)
_GOOD = presentation(_CRED, _HOLDER, "library", ["residence", "library"])
_VERIFIER = Verifier(bundles=[_CITY.bundle()], roots=[_CITY.root])
_RAW = transport.unpack(_GOOD)


def _check(text: str) -> None:
    r = _VERIFIER.verify(text, service="library", now=NOW)
    assert r.decision in ("accepted", "rejected")
    if r.decision == "rejected":
        assert r.code in message_catalog(), r.code


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=800))
def test_random_text(text: str) -> None:
    _check(text)
    _check("PU1:" + text)


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_behind_valid_base45(data: bytes) -> None:
    _check("PU1:" + base45.encode(data))


@settings(max_examples=300)
@given(st.data())
def test_mutated_presentations_are_rejected(data: st.DataObject) -> None:
    raw = bytearray(_RAW)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    if bytes(raw) == _RAW:  # two flips of one byte can cancel out
        return
    r = _VERIFIER.verify(transport.pack(bytes(raw)), service="library", now=NOW)
    assert r.decision == "rejected"  # every byte is covered by a signature or a digest


@settings(max_examples=200)
@given(st.integers(0, len(_RAW) - 1))
def test_truncations(n: int) -> None:
    r = _VERIFIER.verify(transport.pack(_RAW[:n]), service="library", now=NOW)
    assert r.decision == "rejected"


def _nested(depth: int) -> list[object]:
    obj: list[object] = []
    for _ in range(depth):
        obj = [obj]
    return obj


@pytest.mark.parametrize("obj", [
    _nested(40),
    [b"\x00" * 5000],
    list(range(3000)),
    {i: i for i in range(1000)},
    [cbor2.CBORTag(18, [b"", {}, b"", b""]), []],
    [1.5, None, True, "x" * 3000],
])
def test_hostile_structures(obj: object) -> None:
    _check(transport.pack(cbor2.dumps(obj)))


def test_huge_declared_lengths() -> None:
    for header in (b"\x9b", b"\x5b", b"\x7b", b"\xbb"):
        _check(transport.pack(header + b"\x00\x00\x00\xff\xff\xff\xff\xff"))


def test_zlib_bomb() -> None:
    import zlib

    bomb = zlib.compress(b"\x00" * 50_000_000, 9)
    r = _VERIFIER.verify("PU1:" + base45.encode(bomb[:3000]), service="library", now=NOW)
    assert r.decision == "rejected" and r.code in ("too_large", "zlib_invalid")


def test_random_flips_never_accept() -> None:
    rng = random.Random(7)
    text = list(_GOOD)
    for _ in range(300):
        mutated = text[:]
        i = rng.randrange(4, len(mutated))
        mutated[i] = rng.choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
        if mutated != text:
            r = _VERIFIER.verify("".join(mutated), service="library", now=NOW)
            assert r.decision == "rejected"
