"""credential.merkle against the transparency-dev vectors, a naive reference and hypothesis."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from credential import merkle
from credential.errors import LedgerError

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"
if not VECTORS.is_dir():  # a clean clone sits next to ../shared as well
    VECTORS = Path("/work/shared/vectors/merkle")


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s or "")


def _cases(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


# -- naive reference (RFC 9162 §2.1 read literally) --------------------------------------------


def ref_mth(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


class MemoryTree:
    """Stores every perfect subtree hash, as the ledger does."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        level = [merkle.leaf_hash(x) for x in leaves]
        depth = 0
        while level:
            for i, h in enumerate(level):
                self.nodes[(depth, i)] = h
            level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            depth += 1

    def __call__(self, refs: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        return {r: self.nodes[r] for r in refs}


def _leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


# -- vectors -----------------------------------------------------------------------------------


def test_vectors_present() -> None:
    assert len(_cases("inclusion")) > 50 and len(_cases("consistency")) > 50


@pytest.mark.parametrize("path", _cases("inclusion"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_inclusion_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]),
            [_b64(p) for p in case["proof"] or []], _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(LedgerError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", _cases("consistency"), ids=lambda p: str(p.relative_to(VECTORS)))
def test_consistency_vectors(path: Path) -> None:
    case = json.loads(path.read_text())
    args = (case["size1"], case["size2"], [_b64(p) for p in case["proof"] or []],
            _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(LedgerError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


def test_reference_roots() -> None:
    leaves = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243",
                                           "5051525354555657", "606162636465666768696a6b6c6d6e6f")]
    assert merkle.root_from_leaf_hashes([]).hex().startswith("e3b0c442")
    assert merkle.root_from_leaf_hashes(map(merkle.leaf_hash, leaves[:3])).hex() == (
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77")
    assert merkle.root_from_leaf_hashes(map(merkle.leaf_hash, leaves)).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def test_messages_say_got_and_want() -> None:
    with pytest.raises(LedgerError) as err:
        merkle.verify_inclusion(0, 8, b"\0" * 32, [b"\0" * 32], b"\0" * 32)
    assert err.value.code == "merkle_bad_proof_length"
    assert "got 1, expected 3" in err.value.message["en"]


# -- against the naive reference --------------------------------------------------------------


def test_all_pairs_up_to_64() -> None:
    leaves = _leaves(64)
    tree = MemoryTree(leaves)
    roots = [ref_mth(leaves[:n]) for n in range(65)]
    for n in range(1, 65):
        assert merkle.tree_root(n, tree) == roots[n]
        for m in range(n):
            proof = merkle.inclusion_proof(m, n, tree)
            assert proof == ref_path(m, leaves[:n])
            merkle.verify_inclusion(m, n, merkle.leaf_hash(leaves[m]), proof, roots[n])
        for m in range(1, n + 1):
            cproof = merkle.consistency_proof(m, n, tree)
            assert cproof == (ref_subproof(m, leaves[:n], True) if m < n else [])
            merkle.verify_consistency(m, n, cproof, roots[m], roots[n])
            if m < n:
                with pytest.raises(LedgerError):
                    merkle.verify_consistency(m, n, cproof, roots[m], roots[n - 1])
                with pytest.raises(LedgerError):
                    merkle.verify_consistency(m, n, cproof[:-1], roots[m], roots[n])


class SparseSource:
    """A hash source for huge trees: a perfect node's hash is derived from its position only.

    Its values are not those of any real tree, which is fine: the proof built from it must
    verify against the root built from the same source.
    """

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, refs: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        self.calls += 1
        return {r: self.node(*r) for r in refs}

    def node(self, level: int, index: int) -> bytes:
        if level == 0:
            return merkle.leaf_hash(index.to_bytes(8, "big"))
        left, right = self.node(level - 1, 2 * index), self.node(level - 1, 2 * index + 1)
        return merkle.node_hash(left, right)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 100_000), st.data())
def test_random_sizes(size: int, data: st.DataObject) -> None:
    tree = _CachedSparse()
    index = data.draw(st.integers(0, size - 1))
    root = merkle.tree_root(size, tree)
    proof = merkle.inclusion_proof(index, size, tree)
    assert len(proof) == merkle.inclusion_proof_length(index, size)
    merkle.verify_inclusion(index, size, tree.node(0, index), proof, root)
    old = data.draw(st.integers(1, size))
    cproof = merkle.consistency_proof(old, size, tree)
    merkle.verify_consistency(old, size, cproof, merkle.tree_root(old, tree), root)
    if cproof:
        bad = list(cproof)
        bad[0] = bytes([bad[0][0] ^ 1]) + bad[0][1:]
        with pytest.raises(LedgerError):
            merkle.verify_consistency(old, size, bad, merkle.tree_root(old, tree), root)


class _CachedSparse(SparseSource):
    def __init__(self) -> None:
        super().__init__()
        self.cache: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        key = (level, index)
        if key not in self.cache:
            self.cache[key] = super().node(level, index)
        return self.cache[key]


@given(st.lists(st.binary(max_size=8), min_size=1, max_size=40))
def test_root_matches_reference(leaves: list[bytes]) -> None:
    assert merkle.root_from_leaf_hashes(map(merkle.leaf_hash, leaves)) == ref_mth(leaves)
    assert merkle.tree_root(len(leaves), MemoryTree(leaves)) == ref_mth(leaves)


def test_one_fetch_per_proof() -> None:
    src = _CachedSparse()
    merkle.inclusion_proof(12345, 99999, src)
    assert src.calls == 1


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (3, 3), (1, 3)])
def test_bad_ranges(start: int, end: int) -> None:
    with pytest.raises(LedgerError) as err:
        merkle.range_nodes(start, end)
    assert err.value.code == "merkle_bad_range"


def test_a_store_missing_a_node_is_merkle_missing_node() -> None:
    """A hash store that lacks a node the proof needs (a damaged ledger database) is a typed
    error naming the node, not a KeyError."""
    tree = MemoryTree(_leaves(8))
    assert merkle.inclusion_proof(3, 8, tree) == ref_path(3, _leaves(8))
    del tree.nodes[(0, 2)]  # the sibling of leaf 3

    def lossy(refs: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        return {r: tree.nodes[r] for r in refs if r in tree.nodes}

    with pytest.raises(LedgerError) as err:
        merkle.inclusion_proof(3, 8, lossy)
    assert err.value.code == "merkle_missing_node" and "(0, 2)" in err.value.message["en"]
