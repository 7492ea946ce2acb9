"""No input makes the engine raise, hang or allocate: everything ends in a typed rejection."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from credential import base45, transport
from credential.errors import message_catalog
from tests.cbor_edits import draw_edit, edit, node_paths
from tests.factory import NOW, City, presentation
from verifier.engine import Verifier

_CITY = City()
_HOLDER = nacl.signing.SigningKey.generate()
_CRED = _CITY.issue(holder=_HOLDER)
_GOOD = presentation(_CRED, _HOLDER, "library", ["residence", "library"])
_VERIFIER = Verifier(bundles=[_CITY.bundle()], roots=[_CITY.root])
_RAW = transport.unpack(_GOOD)


def _check(text: str, *codes: str) -> None:
    """Junk is refused (never accepted: no input here carries a valid signature) with a code of
    the catalog, and with one of ``codes`` when they are given."""
    r = _VERIFIER.verify(text, service="library", now=NOW)
    assert r.decision == "rejected", r
    assert r.code in message_catalog(), r.code
    if codes:
        assert r.code in codes, r


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=800))
def test_random_text(text: str) -> None:
    _check(text)
    _check("PU1:" + text)


# Random text rarely gets past base45 (one character outside its alphabet is enough); text
# drawn from the alphabet (in either case, as a scanner may send it) reaches zlib and CBOR.
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=base45.ALPHABET + base45.ALPHABET.lower(), max_size=800))
def test_random_base45_text(text: str) -> None:
    _check("PU1:" + text, "base45_invalid", "zlib_invalid", "too_large", "cbor_invalid",
           "cose_invalid", "shape_invalid", "scan_incomplete", "scan_several")


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


# Structure-aware (tests.cbor_edits): well-formed CBOR of the right outline with any one node,
# down into the signed payload and the disclosures, replaced by another value or removed.
_PAPER = transport.pack(_CITY.issue().to_cbor())
# the unprotected headers (item 1) of the credential's COSE_Sign1 (item 0) and of the
# presentation's key-binding COSE_Sign1 (item 3)
_UNPROTECTED = {(0, 1), (3, 1)}


@pytest.mark.parametrize("good", [_GOOD, _PAPER], ids=["presentation", "paper"])
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_node_replaced_or_removed_is_a_typed_rejection(good: str,
                                                           data: st.DataObject) -> None:
    obj = cbor2.loads(transport.unpack(good))
    path, edited = draw_edit(data, obj)
    if edited == obj:
        return
    r = _VERIFIER.verify(transport.pack(cbor2.dumps(edited)), service="library", now=NOW)
    if path[:2] in _UNPROTECTED:
        # outside the signature by design (RFC 9052 §3): unknown labels are ignored, the kid
        # there never overrides the signed one; anything else is a typed rejection
        assert r.accepted or r.code in message_catalog(), r.code
    else:  # every other node is under a signature or a digest: no edit is accepted
        assert r.decision == "rejected" and r.code in message_catalog(), r.code


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
    # Refused before anything is allocated, as a code whose bytes end before its content does:
    # at a counter, what a code cut short by the scanner looks like.
    for header in (b"\x9b", b"\x5b", b"\x7b", b"\xbb"):
        _check(transport.pack(header + b"\x00\x00\x00\xff\xff\xff\xff\xff"), "scan_incomplete")


def test_zlib_bomb() -> None:
    import zlib

    bomb = zlib.compress(b"\x00" * 50_000_000, 9)
    # 3,000 bytes of it inflate far past the cap: refused for its size, not as a cut stream
    r = _VERIFIER.verify("PU1:" + base45.encode(bomb[:3000]), service="library", now=NOW)
    assert (r.decision, r.code) == ("rejected", "too_large")


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


def _node(obj: Any, path: tuple[object, ...]) -> Any:
    for step in path:
        if step == "cbor":
            obj = cbor2.loads(obj)
        elif step == "tag":
            obj = obj.value
        else:
            obj = obj[step]
    return obj


def _nudged(value: object) -> object:
    """A value of the same type, one step away: what gets past every shape check."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, bytes):
        return bytes([value[0] ^ 1]) + value[1:] if value else b"\x00"
    if isinstance(value, str):
        return value + "x"
    return None


@pytest.mark.parametrize(("good", "deep"), [
    (_GOOD, {"signature_invalid", "disclosure_mismatch", "holder_signature_invalid"}),
    (_PAPER, {"signature_invalid", "disclosure_mismatch", "disclosures_incomplete"}),
], ids=["presentation", "paper"])
def test_every_node_edited_is_refused_and_the_edits_reach_the_signatures(
        good: str, deep: set[str]) -> None:
    """The structure-aware edits the property test draws from, applied to every node in turn
    (removed, made null, nudged to another value of its type): none is accepted outside the
    unprotected headers, and they are refused by the signature and digest checks as well as
    the shape checks, so the fuzzing above reaches past the parsers."""
    obj = cbor2.loads(transport.unpack(good))
    seen: set[str] = set()
    for path in list(node_paths(obj))[1:]:
        edits = [edit(obj, path, None, False), edit(obj, path, _nudged(_node(obj, path)), False)]
        if path[-1] not in ("tag", "cbor"):
            edits.append(edit(obj, path, None, True))
        for edited in edits:
            if edited == obj:
                continue
            r = _VERIFIER.verify(transport.pack(cbor2.dumps(edited)), service="library", now=NOW)
            if path[:2] not in _UNPROTECTED:
                assert r.decision == "rejected", path
            seen.add(r.code)
    assert {"shape_invalid", "cose_invalid", *deep} <= seen, seen
