"""Selective disclosure: salted disclosures committed to by a small Merkle tree.

Each disclosure group (see ``schemas``) becomes the CBOR bytes ``[salt, key, value]`` with a
128-bit random salt. Its leaf is ``SHA-256(0x00 ‖ bytes)`` and inner nodes ``SHA-256(0x01 ‖ l ‖ r)``
with the RFC 9162 tree shape, both truncated to 128 bits. The credential signs only the root;
a presentation carries the disclosed groups plus the few subtree hashes needed to recompute it
(a multi-leaf inclusion proof), so undisclosed groups cost two or three hashes, not one each.

Why 128-bit digests: a holder who wants to show a different value must find a second preimage
(2^128 work); collisions (2^64) would only help the issuer, who signs whatever it wants anyway.
Halving the digests keeps the library presentation's QR under the size of a COVID certificate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from credential import merkle

__all__ = ["DIGEST_LEN", "SALT_LEN", "leaf_digest", "multiproof", "root", "root_from_multiproof"]

SALT_LEN = 16
DIGEST_LEN = 16


def leaf_digest(disclosure: bytes) -> bytes:
    return merkle.leaf_hash(disclosure)[:DIGEST_LEN]


def _node(left: bytes, right: bytes) -> bytes:
    return merkle.node_hash(left, right)[:DIGEST_LEN]


# The tree shape is RFC 9162's (the same split as the ledger's), only the hashes are truncated.
_split = merkle.split_point


def root(leaves: list[bytes]) -> bytes:
    def mth(lo: int, hi: int) -> bytes:
        if hi - lo == 1:
            return leaves[lo]
        k = _split(hi - lo)
        return _node(mth(lo, lo + k), mth(lo + k, hi))

    if not leaves:
        raise ValueError("empty tree")
    return mth(0, len(leaves))


def multiproof(leaves: list[bytes], known: set[int]) -> list[bytes]:
    """Hashes of the maximal subtrees containing no known leaf, left to right: the gaps of the
    same plan the verifier runs (``_plan``), so both sides agree on the shape by construction."""
    plan = _plan(len(leaves), tuple(sorted(known)))
    if plan is None:
        raise ValueError("known leaf out of range")
    return [root(leaves[lo:hi]) for lo, hi in plan[1]]


@lru_cache(maxsize=256)
def _plan(size: int, known: tuple[int, ...]
          ) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]] | None:
    """Post-order program recomputing the root (``i >= 0`` push known leaf i, ``-1`` push the
    next proof hash, ``-2`` combine the top two) and the leaf range of each proof hash, left to
    right; ``None`` for an impossible shape. Cached: counters see a handful of shapes, over and
    over."""
    if size < 1 or any(not 0 <= i < size for i in known):
        return None
    ops: list[int] = []
    gaps: list[tuple[int, int]] = []

    def walk(lo: int, hi: int) -> None:
        if not any(lo <= i < hi for i in known):
            ops.append(-1)
            gaps.append((lo, hi))
        elif hi - lo == 1:
            ops.append(lo)
        else:
            k = _split(hi - lo)
            walk(lo, lo + k)
            walk(lo + k, hi)
            ops.append(-2)

    walk(0, size)
    return tuple(ops), tuple(gaps)


def root_from_multiproof(size: int, known: Mapping[int, bytes], proof: Sequence[bytes]
                         ) -> bytes | None:
    """Recompute the root from the known leaves and the proof; ``None`` if the proof has the wrong
    number of hashes or a known index is out of range (the caller turns that into a rejection)."""
    plan = _plan(size, tuple(known))  # a Mapping's keys are distinct: no repeats to refuse
    if plan is None or len(plan[1]) != len(proof):
        return None
    if any(len(h) != DIGEST_LEN for h in proof):
        return None
    stack: list[bytes] = []
    push, pop = stack.append, stack.pop
    next_proof = iter(proof).__next__
    for op in plan[0]:
        if op >= 0:
            push(known[op])
        elif op == -1:
            push(next_proof())
        else:
            right = pop()
            push(_node(pop(), right))
    return stack[0]
