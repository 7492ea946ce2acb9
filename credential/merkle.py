"""RFC 9162 (Certificate Transparency v2) Merkle trees: hashing, proof building, proof checking.

Pure and dependency-free (stdlib only), so the offline verifier and the wallet reuse it as is.
Shaped like transparency-dev/merkle: building a proof needs only a *hash source* — a callable that
returns the stored hashes of perfect subtrees ``(level, index)``, where a node at ``level`` covers
leaves ``[index·2^level, (index+1)·2^level)`` — so a log never rehashes its leaves to answer.
Checking a proof validates sizes, index and proof length first ("got X, want Y") and only then
compares roots.

Every failure raises :class:`credential.errors.LedgerError` with a ``merkle_*`` code.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from credential.errors import LedgerError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "HashSource",
    "NodeRef",
    "consistency_nodes",
    "consistency_proof",
    "consistency_proof_length",
    "fold",
    "inclusion_nodes",
    "inclusion_proof",
    "inclusion_proof_length",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "split_point",
    "subtree_root",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeRef = tuple[int, int]
"""A perfect subtree: ``(level, index)``."""

HashSource = Callable[[Sequence[NodeRef]], Mapping[NodeRef, bytes]]
"""Given node references, returns their hashes (all of them, or raises)."""

# Hashing starts from a copy of a context that already holds the domain-separation byte: a
# copy skips OpenSSL's algorithm lookup that every ``hashlib.sha256()`` makes, and the prefix is
# never concatenated onto the data. Contexts are only ever copied, never updated, so sharing
# them between threads is safe.
_LEAF_CTX: Final = hashlib.sha256(b"\x00")
_NODE_CTX: Final = hashlib.sha256(b"\x01")


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    h = _LEAF_CTX.copy()
    h.update(data)
    return h.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    h = _NODE_CTX.copy()
    h.update(left)
    h.update(right)
    return h.digest()


def fold(hashes: Sequence[bytes]) -> bytes:
    """The root over perfect-subtree hashes listed left to right (as ``range_nodes`` gives
    them): folded right to left, the MTH of an unbalanced range. No hashes: the empty root."""
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes, in one pass with a stack of perfect subtrees."""
    stack: list[bytes] = []
    for count, h in enumerate(hashes, start=1):
        n = count
        while n & 1 == 0:
            h = node_hash(stack.pop(), h)
            n >>= 1
        stack.append(h)
    return fold(stack)


def range_nodes(start: int, end: int) -> list[NodeRef]:
    """The aligned perfect subtrees whose fold is MTH(D[start:end]), left to right.

    Only ranges that occur in RFC 9162's recursion are accepted (``start`` aligned to the
    largest power of two not above ``end - start``).
    """
    if not 0 <= start < end:
        raise LedgerError("merkle_bad_range", start=start, end=end)
    nodes: list[NodeRef] = []
    width = end - start
    pos = start
    level = width.bit_length() - 1
    while level >= 0:
        if width >> level & 1:
            size = 1 << level
            if pos % size:
                raise LedgerError("merkle_bad_range", start=start, end=end)
            nodes.append((level, pos >> level))
            pos += size
        level -= 1
    return nodes


def split_point(n: int) -> int:
    """Largest power of two strictly below ``n`` (n ≥ 2): where RFC 9162 splits a tree."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_nodes(index: int, size: int) -> list[list[NodeRef]]:
    """For each element of PATH(index, D[size]) (leaf side first), the nodes it folds."""
    if not 0 <= index < size:
        raise LedgerError("merkle_index_out_of_range", index=index, size=size)
    top_down: list[list[NodeRef]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            top_down.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            top_down.append(range_nodes(lo, lo + k))
            lo = lo + k
    top_down.reverse()
    return top_down


def consistency_nodes(size1: int, size2: int) -> list[list[NodeRef]]:
    """For each element of PROOF(size1, D[size2]) (RFC 9162 §2.1.4.1), the nodes it folds."""
    if not 0 < size1 <= size2:
        raise LedgerError("merkle_bad_sizes", size1=size1, size2=size2)
    top_down: list[list[NodeRef]] = []
    lo, hi, complete = 0, size2, True
    while True:
        if size1 == hi:
            if not complete:
                top_down.append(range_nodes(lo, hi))
            break
        k = split_point(hi - lo)
        if size1 <= lo + k:
            top_down.append(range_nodes(lo + k, hi))
            hi = lo + k
        else:
            top_down.append(range_nodes(lo, lo + k))
            lo = lo + k
            complete = False
    top_down.reverse()
    return top_down


def _resolve(groups: list[list[NodeRef]], source: HashSource) -> list[bytes]:
    wanted = sorted({ref for group in groups for ref in group})
    found = source(wanted) if wanted else {}
    try:
        return [fold([found[ref] for ref in group]) for group in groups]
    except KeyError as exc:
        raise LedgerError("merkle_missing_node", node=str(exc.args[0])) from None


def inclusion_proof(index: int, size: int, source: HashSource) -> list[bytes]:
    """The RFC 9162 inclusion proof for leaf ``index`` in the tree of ``size`` leaves."""
    return _resolve(inclusion_nodes(index, size), source)


def consistency_proof(size1: int, size2: int, source: HashSource) -> list[bytes]:
    """The RFC 9162 consistency proof from ``size1`` to ``size2`` (empty when equal)."""
    return _resolve(consistency_nodes(size1, size2), source)


def subtree_root(start: int, end: int, source: HashSource) -> bytes:
    """MTH(D[start:end]) from stored perfect subtrees."""
    return _resolve([range_nodes(start, end)], source)[0]


def tree_root(size: int, source: HashSource) -> bytes:
    """MTH of the first ``size`` leaves (the empty-tree hash for 0)."""
    if size == 0:
        return EMPTY_ROOT
    return subtree_root(0, size, source)


# -- verification -------------------------------------------------------------------------------


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes an inclusion proof for ``index`` in a tree of ``size`` has."""
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner + border


def consistency_proof_length(size1: int, size2: int) -> int:
    """How many hashes a consistency proof between ``0 < size1 < size2`` has."""
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length() - shift
    border = bin((size1 - 1) >> (inner + shift)).count("1")
    seed = 0 if size1 == 1 << shift else 1
    return seed + inner + border


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise LedgerError("merkle_bad_hash_size", what=name, got=len(value), want=HASH_SIZE)


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes:
    """The root implied by ``proof`` for leaf hash ``leaf`` at ``index`` (RFC 9162 §2.1.3.2)."""
    if index < 0 or size < 0 or index >= size:
        raise LedgerError("merkle_index_out_of_range", index=index, size=size)
    _check_hash("leaf", leaf)
    want = inclusion_proof_length(index, size)
    if len(proof) != want:
        raise LedgerError("merkle_bad_proof_length", got=len(proof), want=want)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable once the length matched; kept as the RFC's own check
        raise LedgerError("merkle_bad_proof_length", got=len(proof), want=want)
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise unless ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree with ``root``."""
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if not hmac.compare_digest(got, root):
        raise LedgerError("merkle_root_mismatch", got=got.hex(), want=root.hex())


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raise unless ``proof`` shows the tree (size1, root1) is a prefix of (size2, root2).

    A consistency check from the empty tree proves nothing (RFC 9162 requires 0 < size1), so
    ``size1 == 0`` is refused.
    """
    if size1 < 0 or size2 < 0 or size2 < size1:
        raise LedgerError("merkle_bad_sizes", size1=size1, size2=size2)
    if size1 == 0:
        raise LedgerError("merkle_empty_tree", size1=size1, size2=size2)
    if size1 == size2:
        if proof:
            raise LedgerError("merkle_bad_proof_length", got=len(proof), want=0)
        if not hmac.compare_digest(root1, root2):
            raise LedgerError("merkle_root_mismatch", got=root1.hex(), want=root2.hex())
        return
    want = consistency_proof_length(size1, size2)
    if len(proof) != want:
        raise LedgerError("merkle_bad_proof_length", got=len(proof), want=want)
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise LedgerError("merkle_bad_proof_length", got=len(proof), want=want)
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise LedgerError("merkle_bad_proof_length", got=len(proof), want=want)
    if not hmac.compare_digest(fr, root1):
        raise LedgerError("merkle_root_mismatch", got=fr.hex(), want=root1.hex())
    if not hmac.compare_digest(sr, root2):
        raise LedgerError("merkle_root_mismatch", got=sr.hex(), want=root2.hex())
