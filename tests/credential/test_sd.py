"""Selective-disclosure Merkle tree: multi-leaf proofs agree with the plain root, and refuse
anything else."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from credential import sd


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(bytes([i])).digest()[:sd.DIGEST_LEN] for i in range(n)]


def _naive_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH written straight from the definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    left, right = _naive_root(leaves[:k]), _naive_root(leaves[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()[:sd.DIGEST_LEN]


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_multiproof_round_trip(case: tuple[int, set[int]]) -> None:
    n, known = case
    leaves = _leaves(n)
    root = sd.root(leaves)
    assert root == _naive_root(leaves)
    proof = sd.multiproof(leaves, known)
    assert sd.root_from_multiproof(n, {i: leaves[i] for i in known}, proof) == root


@given(st.integers(2, 20).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1),
                                                                            min_size=1))))
def test_tampering_is_detected(case: tuple[int, set[int]]) -> None:
    n, known = case
    leaves = _leaves(n)
    root = sd.root(leaves)
    proof = sd.multiproof(leaves, known)
    shown = {i: leaves[i] for i in known}
    first = min(known)
    assert sd.root_from_multiproof(n, {**shown, first: b"\x00" * 16}, proof) != root
    assert sd.root_from_multiproof(n, shown, [*proof, b"\x00" * 16]) is None
    if proof:
        assert sd.root_from_multiproof(n, shown, proof[:-1]) is None
        assert sd.root_from_multiproof(n, shown, [b"\xff" * 16, *proof[1:]]) != root
    assert sd.root_from_multiproof(n, {n: leaves[0]}, proof) is None


def test_library_presentation_needs_two_hashes() -> None:
    """The schema's leaf order puts residence and library side by side."""
    from schemas import schema

    index = {g.name: g.index for g in schema().groups}
    n = len(schema().groups)
    for service, want in (("library", 2), ("transit", 3), ("clinic", 3)):
        known = {index[g] for g in schema().services[service].discloses}
        assert len(sd.multiproof(_leaves(n), known)) == want, service
