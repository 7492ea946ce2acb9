"""``issuer.indices``: the keyed permutation that places a status list's credentials."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from issuer.indices import KEY_BYTES, MAX_SIZE, ROUNDS, IndexPermutation

KEY = bytes(range(KEY_BYTES))
keys = st.binary(min_size=KEY_BYTES, max_size=KEY_BYTES)


def reference(key: bytes, size: int, n: int) -> int:
    """The construction spelled out plainly, nothing remembered: a change to the fast one that
    would move the indices of lists already in use (and break their counters) shows here."""
    half = -(-(size - 1).bit_length() // 2)
    base = 1 << half
    x = n
    while True:
        left, right = divmod(x, base)
        for i in range(ROUNDS):
            message = (b"pasaporte/status-index/v1\x00" + size.to_bytes(8, "big") + bytes([i])
                       + right.to_bytes((half + 7) // 8, "big"))
            f = int(hmac.new(key, message, hashlib.sha256).hexdigest(), 16) >> (256 - half)
            left, right = right, left ^ f
        x = left * base + right
        if x < size:
            return x


@given(key=keys, size=st.integers(2, 600))
def test_every_position_gets_its_own_index(key: bytes, size: int) -> None:
    p = IndexPermutation(key, size)
    assert sorted(p(n) for n in range(size)) == list(range(size))


@pytest.mark.parametrize("size", [2, 3, 4, 5, 1000, 1024, 1025, 131_072])
def test_a_whole_list_is_a_permutation(size: int) -> None:
    p = IndexPermutation(KEY, size)
    order = [p(n) for n in range(size)]
    assert sorted(order) == list(range(size))
    if size >= 1000:
        assert order != sorted(order)


@given(key=keys, size=st.integers(2, 5000), data=st.data())
def test_it_is_the_reference_construction(key: bytes, size: int, data: st.DataObject) -> None:
    n = data.draw(st.integers(0, size - 1))
    assert IndexPermutation(key, size)(n) == reference(key, size, n)


def test_one_key_always_gives_the_same_order() -> None:
    forward = [IndexPermutation(KEY, 1000)(n) for n in range(1000)]
    shared = IndexPermutation(KEY, 1000)
    backward = [shared(n) for n in reversed(range(1000))]
    assert forward == backward[::-1]


@given(a=keys, b=keys)
def test_different_keys_give_different_orders(a: bytes, b: bytes) -> None:
    assume(a != b)
    pa, pb = IndexPermutation(a, 1000), IndexPermutation(b, 1000)
    assert [pa(n) for n in range(1000)] != [pb(n) for n in range(1000)]


def test_the_size_is_part_of_the_permutation() -> None:
    """One key over two sizes: unrelated orders, not one the prefix of the other."""
    small, large = IndexPermutation(KEY, 1000), IndexPermutation(KEY, 1024)
    assert [small(n) for n in range(50)] != [large(n) for n in range(50)]


@pytest.mark.parametrize(("key", "size", "n"), [
    (b"short", 10, 0), (bytes(KEY_BYTES + 1), 10, 0), (bytearray(KEY), 10, 0),
    (KEY, 1, 0), (KEY, 0, 0), (KEY, MAX_SIZE + 1, 0), (KEY, True, 0), (KEY, 10.0, 0),
    (KEY, 10, -1), (KEY, 10, 10), (KEY, 10, True), (KEY, 10, 1.0),
])
def test_arguments_are_checked_first(key: object, size: object, n: object) -> None:
    with pytest.raises(ValueError):
        IndexPermutation(key, size)(n)  # type: ignore[arg-type]


def test_the_key_stays_out_of_reprs() -> None:
    assert KEY.hex() not in repr(IndexPermutation(KEY, 10))
    assert repr(KEY) not in repr(IndexPermutation(KEY, 10))
