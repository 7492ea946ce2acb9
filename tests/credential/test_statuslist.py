"""Status lists: W3C bit order, O(1) lookups, the 1,000,000-entry size anchor, bounded inflate."""

from __future__ import annotations

import random
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from credential.errors import MalformedInput
from credential.statuslist import DEFAULT_SIZE, StatusList


def _code(call: object) -> MalformedInput:
    with pytest.raises(MalformedInput) as info:
        call()  # type: ignore[operator]
    return info.value


def test_bit_zero_is_most_significant_bit_of_first_byte() -> None:
    status = StatusList.new("revocation", 16)
    status.set(0)
    status.set(9)
    assert bytes(status.bits) == b"\x80\x40"
    assert status.get(0) and status.get(9)
    assert not status.get(1) and not status.get(8)
    status.set(0, False)
    assert bytes(status.bits) == b"\x00\x40"


def test_default_size_is_w3c_minimum() -> None:
    status = StatusList.new("suspension")
    assert status.size == DEFAULT_SIZE == 131_072
    assert len(status.bits) == 16_384
    assert status.count() == 0


def test_million_entries_one_percent_revoked_fits_the_anchor() -> None:
    status = StatusList.new("revocation", 1_000_000)
    assert len(status.bits) == 125_000
    revoked = set(random.Random(2026).sample(range(1_000_000), 10_000))
    for index in revoked:
        status.set(index)
    data = status.compress()
    assert len(data) <= 16_384, len(data)
    back = StatusList.from_compressed("revocation", 1_000_000, data)
    assert back.bits == status.bits
    assert back.count() == 10_000
    assert all(back.get(i) for i in list(revoked)[:500])


def test_index_out_of_range() -> None:
    status = StatusList.new("revocation", 64)
    for index in (-1, 64, 10**20):
        error = _code(lambda index=index: status.get(index))
        assert error.code == "statuslist_index"
    assert _code(lambda: status.set(64)).code == "statuslist_index"
    assert _code(lambda: status.get(True)).code == "statuslist_index"


def test_construction_is_validated() -> None:
    assert _code(lambda: StatusList.new("revocation", 12)).code == "statuslist_invalid"
    assert _code(lambda: StatusList.new("revocation", 0)).code == "statuslist_invalid"
    assert _code(lambda: StatusList("expiry", 8, bytearray(1))).code == "statuslist_invalid"  # type: ignore[arg-type]
    assert _code(lambda: StatusList("revocation", 16, bytearray(1))).code == "statuslist_invalid"


@pytest.mark.parametrize(
    "data",
    [
        zlib.compress(bytes(127)),  # smaller than the size
        zlib.compress(bytes(129)),  # bigger than the size
        zlib.compress(bytes(128))[:-2],  # truncated
        zlib.compress(bytes(128)) + b"\x00",  # trailing bytes
        b"not zlib at all",
        b"",
    ],
)
def test_from_compressed_rejects_wrong_sizes_and_corruption(data: bytes) -> None:
    error = _code(lambda: StatusList.from_compressed("revocation", 1024, data))
    assert error.code == "statuslist_invalid"


def test_bomb_is_refused() -> None:
    bomb = zlib.compress(bytes(50_000_000), 9)
    error = _code(lambda: StatusList.from_compressed("revocation", DEFAULT_SIZE, bomb))
    assert error.code == "statuslist_invalid"


def test_claimed_size_is_bounded() -> None:
    error = _code(lambda: StatusList.from_compressed("revocation", 8 << 30, b""))
    assert error.code == "statuslist_invalid"
    small = StatusList.new("revocation", 1024).compress()
    error = _code(lambda: StatusList.from_compressed("revocation", 1024, small, max_inflated=64))
    assert error.code == "statuslist_invalid"


@given(st.sets(st.integers(0, 4095), max_size=200))
def test_round_trip(indices: set[int]) -> None:
    status = StatusList.new("suspension", 4096)
    for index in indices:
        status.set(index)
    back = StatusList.from_compressed("suspension", 4096, status.compress())
    assert {i for i in range(4096) if back.get(i)} == indices


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_malformed_input(data: bytes) -> None:
    try:
        StatusList.from_compressed("revocation", 1024, data)
    except MalformedInput as exc:
        assert exc.code == "statuslist_invalid"
