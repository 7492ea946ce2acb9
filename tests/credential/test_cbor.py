"""Deterministic CBOR encoding and the hardened CBOR parser: every rejection, and fuzzing."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credential import cbor
from credential.errors import MalformedInput

# Values our formats use: integers, byte and text strings, booleans, null, arrays and maps.
_scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
_keys = st.integers(min_value=-(2**64), max_value=2**64 - 1) | st.text(max_size=10)
values: st.SearchStrategy[Any] = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=40,
)


def _reason(data: bytes, **limits: Any) -> str:
    with pytest.raises(MalformedInput) as info:
        cbor.loads(data, **limits)
    assert info.value.code == "cbor_invalid"
    reason: str = info.value.detail["reason"]
    return reason


# --- dumps -------------------------------------------------------------------------------------


def test_map_keys_sorted_bytewise_not_length_first() -> None:
    # RFC 8949 §4.2.1: 24 encodes as 0x1818 and sorts before -1 (0x20); cbor2's canonical mode
    # (RFC 7049 length-first) would put -1 first.
    assert cbor.dumps({-1: 2, 24: 1}).hex() == "a21818012002"
    assert cbor.dumps({"b": 1, "aa": 2, 100: 3}).hex() == "a318640361620162616102"


def test_nested_maps_and_preferred_encodings() -> None:
    assert cbor.dumps({"x": {24: 1.0, -1: 2}}).hex() == "a16178a21818f93c002002"
    assert cbor.dumps(1.5).hex() == "f93e00"  # shortest float that keeps the value
    assert cbor.dumps(23).hex() == "17"
    assert cbor.dumps(24).hex() == "1818"
    assert cbor.dumps(cbor2.CBORTag(18, [b"", {}])).hex() == "d28240a0"


def test_map_key_order_is_independent_of_insertion_order() -> None:
    assert cbor.dumps({1: "a", -1: "b", "k": 0}) == cbor.dumps({"k": 0, -1: "b", 1: "a"})


@given(values)
def test_round_trip(value: Any) -> None:
    data = cbor.dumps(value)
    decoded = cbor.loads(data, max_size=1 << 20, max_items=1 << 16, max_depth=64)
    assert decoded == value
    assert cbor.dumps(decoded) == data  # deterministic: re-encoding is byte-identical


# --- loads: accepted ---------------------------------------------------------------------------


def test_accepts_plain_document() -> None:
    assert cbor.loads(bytes.fromhex("a201820203026161")) == {1: [2, 3], 2: "a"}


def test_allowed_tag_is_kept_as_cbortag() -> None:
    value = cbor.loads(bytes.fromhex("d28140"), allowed_tags={18})
    assert isinstance(value, cbor2.CBORTag)
    assert value.tag == 18
    assert list(value.value) == [b""]  # cbor2 hands a tag's array content over as a tuple


def test_floats_of_every_width() -> None:
    assert cbor.loads(bytes.fromhex("f93e00")) == 1.5  # half
    assert cbor.loads(bytes.fromhex("fa47c35000")) == 100000.0  # single
    assert cbor.loads(bytes.fromhex("fb3ff199999999999a")) == 1.1  # double
    assert cbor.loads(bytes.fromhex("83f4f5f6")) == [False, True, None]


def test_every_argument_width() -> None:
    for n in (0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1):
        assert cbor.loads(cbor.dumps(n)) == n
        assert cbor.loads(cbor.dumps(-1 - n)) == -1 - n


def _mutants(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for where, byte in edits:
        out[where % len(out)] = byte
    return bytes(out)


@settings(max_examples=400)
@given(st.binary(max_size=200)
       | st.builds(_mutants, values.map(cbor.dumps),
                   st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=2)))
def test_agrees_with_cbor2(data: bytes) -> None:
    # Our decoder is stricter than cbor2 (no tags unless allowed, no undefined, no indefinite
    # lengths, no composite map keys, no trailing bytes) but never reads a document differently.
    try:
        ours = cbor.loads(data)
    except MalformedInput:
        return
    assert _same(ours, cbor2.loads(data)), data.hex()


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same types all the way down (``==`` alone has True == 1)."""
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return (list(a) == list(b) and all(type(k) is type(k2) for k, k2 in zip(a, b, strict=True))
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, float) and a != a:  # NaN
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


def test_limits_are_inclusive() -> None:
    nested = b"\x81" * 15 + b"\x80"  # 16 levels of arrays
    deepest: Any = []
    for _ in range(15):
        deepest = [deepest]
    assert cbor.loads(nested, max_depth=16) == deepest
    array = b"\x99\x07\xff" + b"\x00" * 2047  # 2047 elements + the array = 2048 items
    assert len(cbor.loads(array)) == 2047
    assert cbor.loads(b"\x40" + b"\x00" * 0, max_size=1) == b""


# --- loads: every rejection --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hex_data", "reason"),
    [
        ("", "empty"),
        ("82", "length exceeds input"),
        ("82190000", "truncated"),
        ("19", "truncated"),
        ("1a0000", "truncated"),
        ("1b00000000000000", "truncated"),
        ("62ff", "truncated"),
        ("780aff", "length exceeds input"),
        ("5b1000000000000000", "length exceeds input"),  # claims 2**60 bytes
        ("9b1000000000000000", "length exceeds input"),  # claims 2**60 elements
        ("bb1000000000000000", "length exceeds input"),
        ("5f40ff", "indefinite length"),
        ("9fff", "indefinite length"),
        ("bfff", "indefinite length"),
        ("ff", "indefinite length"),  # a lone "break"
        ("1c", "reserved additional information"),
        ("c100", "tag not allowed"),
        ("c249010000000000000000", "tag not allowed"),  # bignum
        ("f7", "simple value not allowed"),  # undefined
        ("e0", "simple value not allowed"),
        ("f820", "simple value not allowed"),
        ("f801", "simple value not allowed"),  # not well-formed: 1-byte simple < 32
        ("0000", "trailing bytes"),
        ("a201000100", "decode: CBORDecodeError"),  # duplicate key
    ],
)
def test_rejection_reasons(hex_data: str, reason: str) -> None:
    got = _reason(bytes.fromhex(hex_data))
    assert got == reason or (reason.startswith("decode:") and got.startswith("decode:"))


def test_duplicate_map_keys_rejected() -> None:
    assert _reason(bytes.fromhex("a201000100")).startswith("decode:")
    assert _reason(bytes.fromhex("81a2616b00616b01")).startswith("decode:")  # nested


def test_invalid_utf8_rejected() -> None:
    assert _reason(bytes.fromhex("62fffe")).startswith("decode:")
    assert _reason(bytes.fromhex("63eda080")).startswith("decode:")  # an encoded surrogate


def test_composite_map_keys_rejected() -> None:
    assert _reason(bytes.fromhex("a18000")).startswith("decode:")  # {[]: 0}
    assert _reason(bytes.fromhex("a1a00000")).startswith("decode:")  # {{}: 0}


def test_depth_limit_is_capped() -> None:
    with pytest.raises(ValueError):
        cbor.loads(b"\x00", max_depth=100_000)  # a programming error, not input


def test_size_depth_and_item_limits() -> None:
    assert _reason(b"\x40" * 2, max_size=1) == "too large"
    assert _reason(b"\x81" * 16 + b"\x80") == "nesting too deep"
    assert _reason(b"\xd2" * 17 + b"\x00", allowed_tags={18}) == "nesting too deep"
    assert _reason(b"\x99\x08\x00" + b"\x00" * 2048) == "too many items"
    assert _reason(b"\x82" + b"\x82\x00\x00" * 2, max_items=6) == "too many items"


def test_not_bytes_rejected() -> None:
    assert _reason("a0") == "not bytes"  # type: ignore[arg-type]


def test_deep_nesting_far_beyond_recursion_limit() -> None:
    assert _reason(b"\x81" * 100_000 + b"\x00", max_size=1 << 20) == "nesting too deep"


# --- fuzzing: only MalformedInput escapes ------------------------------------------------------


def _only_malformed(data: bytes, **limits: Any) -> None:
    try:
        cbor.loads(data, **limits)
    except MalformedInput as exc:
        assert exc.code == "cbor_invalid"


@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_malformed(data, allowed_tags={0, 1, 2, 18, 24, 258})


@settings(max_examples=300)
@given(values, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.integers(0, 10_000))
def test_fuzz_mutated_valid_encodings(value: Any, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(cbor.dumps(value))
    for where, byte in edits:
        data[where % len(data)] = byte
    _only_malformed(bytes(data))
    _only_malformed(bytes(data[: cut % (len(data) + 1)]))


@given(st.integers(1, 400), st.sampled_from([b"\x81", b"\xa1\x00", b"\xd2"]))
def test_fuzz_deep_nesting(depth: int, opener: bytes) -> None:
    _only_malformed(opener * depth + b"\x00", allowed_tags={18})


@given(st.sampled_from([0x5B, 0x7B, 0x9B, 0xBB, 0x5A, 0x9A, 0xBA]),
       st.integers(2**16, 2**64 - 1), st.binary(max_size=20))
def test_fuzz_huge_lengths(initial: int, length: int, tail: bytes) -> None:
    width = 8 if initial & 0x1F == 27 else 4
    length %= 256 ** width
    _only_malformed(bytes([initial]) + length.to_bytes(width, "big") + tail)
